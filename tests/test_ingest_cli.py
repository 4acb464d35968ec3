"""``vstudio ingest`` as people run it: real processes, real signals, a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.simulate import ChatGenerator
from tests.support.cluster import plain_async_client, plain_client
from tests.support.platforms.twitch_irc import TwitchIrcServer, privmsg

pytestmark = pytest.mark.slow


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vstudio_cli.main", *args]


def stream_key(session_id: str) -> str:
    return f"vstudio:session:{{{session_id}}}:log"


def wait_until(
    condition: Callable[[], object], process: subprocess.Popen[Any], timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the worker exited early: {process.communicate()}")
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_with_nothing_unflushed(
    redis_url: str, session_id: str, signum: signal.Signals
) -> None:
    client = plain_client(redis_url)
    process = subprocess.Popen(
        command(
            "ingest",
            "simulate",
            "--session",
            session_id,
            "--rate",
            "3000",
            "--redis-url",
            redis_url,
            "--json",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VSTUDIO_HISTORY_SIZE": "1000000"},
    )
    try:
        wait_until(lambda: client.xlen(stream_key(session_id)) > 2000, process)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    [stopped] = [line for line in json_lines(stdout) if line["event"] == "stopped"]
    assert stopped["pending"] == 0 and stopped["state"] == "stopped"
    assert stopped["received"] == stopped["published"] + stopped["duplicates"]
    assert client.xlen(stream_key(session_id)) == stopped["published"]
    assert not client.exists(f"vstudio:ingest:worker:{stopped['workerId']}")


def test_status_lists_running_workers_from_their_heartbeats(
    redis_url: str, session_id: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"  # a file, never a pipe nobody drains
    log_file = log_path.open("w")
    process = subprocess.Popen(
        command(
            "ingest",
            "simulate",
            "--session",
            session_id,
            "--rate",
            "50",
            "--redis-url",
            redis_url,
            "--json",
        ),
        stdout=subprocess.DEVNULL,
        stderr=log_file,
        text=True,
    )

    def status() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command(
                "ingest", "status", "--redis-url", redis_url, "--session", session_id, "--json"
            ),
            capture_output=True,
            text=True,
            timeout=30,
        )

    try:
        workers: list[dict] = []

        def listed() -> bool:
            nonlocal workers
            workers = json.loads(status().stdout)["workers"]
            return bool(workers) and workers[0]["received"] > 0

        wait_until(listed, process)
        [worker] = workers
        assert worker["platform"] == "simulate" and worker["session"] == session_id
        assert worker["pid"] == process.pid and worker["state"] == "connected"
        table = subprocess.run(
            command("ingest", "status", "--redis-url", redis_url, "--session", session_id),
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "COLUMNS": "250"},
        )
        assert table.returncode == 0 and worker["workerId"] in table.stdout
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log = log_path.read_text()
            raise AssertionError(f"no stop 30 s after SIGINT; its log:\n{log}") from None
    finally:
        process.kill()
        log_file.close()
    assert process.returncode == 0
    assert json.loads(status().stdout)["workers"] == []
    empty = subprocess.run(
        command("ingest", "status", "--redis-url", redis_url, "--session", session_id),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "no ingestion workers are running" in empty.stdout


def test_replay_names_the_bad_line_and_plays_the_rest(
    redis_url: str, session_id: str, tmp_path: Path
) -> None:
    generator = ChatGenerator(seed=5, deletion_share=0, event_share=0)
    good = [orjson.dumps(generator.message(1_700_000_000_000 + n).wire()) for n in range(40)]
    path = tmp_path / "recorded.jsonl"
    path.write_bytes(b"\n".join([*good[:10], b"{not json at all", *good[10:]]) + b"\n")
    result = subprocess.run(
        command(
            "ingest",
            "replay",
            str(path),
            "--session",
            session_id,
            "--speed",
            "0",
            "--redis-url",
            redis_url,
            "--json",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "line 11: not valid JSON" in result.stderr
    client = plain_client(redis_url)
    assert client.xlen(stream_key(session_id)) == 40
    [stopped] = json_lines(result.stdout)
    assert stopped["published"] == 40 and "1 bad lines" in stopped["detail"]


def test_bad_arguments_exit_2(redis_url: str, tmp_path: Path) -> None:
    bad_session = subprocess.run(
        command("ingest", "simulate", "--session", "a:b", "--redis-url", redis_url),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad_session.returncode == 2 and "invalid session id" in bad_session.stderr
    missing = subprocess.run(
        command("ingest", "replay", str(tmp_path / "no.jsonl"), "--session", "s1"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


async def test_twitch_command_against_a_local_twitch_server(
    redis_url: str, session_id: str
) -> None:
    lines = [
        privmsg(f"cli-{n}", f"hello {n} Kappa", emotes=f"25:{7 + len(str(n))}-{11 + len(str(n))}")
        for n in range(25)
    ]
    async with TwitchIrcServer([lines]) as server:
        process = await asyncio.create_subprocess_exec(
            *command(
                "ingest",
                "twitch",
                "--channel",
                "dallas",
                "--session",
                session_id,
                "--irc-url",
                server.url,
                "--redis-url",
                redis_url,
                "--json",
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        client = plain_async_client(redis_url)
        try:
            for _ in range(400):
                if await client.xlen(stream_key(session_id)) >= 25:
                    break
                await asyncio.sleep(0.05)
            process.send_signal(signal.SIGINT)
            stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
        entries = await client.xrange(stream_key(session_id))
        await client.aclose()
    assert process.returncode == 0, stderr.decode()
    payloads = [orjson.loads(fields[b"e"])["payload"] for _, fields in entries]
    assert [p["id"] for p in payloads] == [f"twitch:cli-{n}" for n in range(25)]
    assert all(p["emotes"][0]["name"] == "Kappa" for p in payloads)
    [stopped] = [line for line in json_lines(stdout.decode()) if line["event"] == "stopped"]
    assert stopped["platform"] == "twitch" and stopped["target"] == "#dallas"


def test_a_killed_worker_disappears_when_its_heartbeat_expires(
    redis_url: str, session_id: str
) -> None:
    client = plain_client(redis_url)
    process = subprocess.Popen(
        command(
            "ingest",
            "simulate",
            "--session",
            session_id,
            "--rate",
            "20",
            "--redis-url",
            redis_url,
            "--json",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "VSTUDIO_HEARTBEAT_TTL": "2"},
    )
    pattern = "vstudio:ingest:worker:simulate-*"
    try:
        wait_until(lambda: any(True for _ in client.scan_iter(match=pattern)), process)
        [key] = [k for k in client.scan_iter(match=pattern) if str(process.pid).encode() in k]
        assert 0 < client.ttl(key) <= 2
    finally:
        process.kill()  # SIGKILL: no clean stop, the record is left to expire
        process.wait()
    deadline = time.monotonic() + 5
    while client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not client.exists(key)
