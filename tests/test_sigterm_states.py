"""Every long-running command stops on SIGTERM within 10 s, in the awkward states too: Redis
gone while a replay drains what it read, while chat is simulated, while the server runs
(issue 13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis

from broker import keys
from broker.models import SessionStatus
from tests.support.loopback import free_port
from tests.support.redis import start_private_redis
from tests.support.sessions import create_session_record

pytestmark = pytest.mark.slow

STOP_WITHIN = 10.0


def vstudio(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vstudio_cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def wait_for_line(stream: object, text: str, timeout: float) -> str:
    """The first line of ``stream`` containing ``text`` (read in this thread)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()  # type: ignore[attr-defined]
        if not line:
            break
        seen.append(line)
        if text in line:
            return str(line)
    raise AssertionError(f"no line with {text!r} in {timeout} s:\n{''.join(seen)[-3000:]}")


def published(port: int, session_id: str, timeout: float = 15) -> None:
    """Wait until the session's stream has an event: the command is past its start."""
    client = redis.Redis(port=port)
    deadline = time.monotonic() + timeout
    try:
        while not client.exists(keys.stream(session_id)):
            assert time.monotonic() < deadline, "nothing was published"
            time.sleep(0.05)
    finally:
        client.close()


def stop_time(process: subprocess.Popen[str]) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_WITHIN + 5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return float("inf")
    return time.monotonic() - started


def env_for(tmp_path: Path, url: str) -> dict[str, str]:
    return {
        "VSTUDIO_REDIS_URL": url,
        "VSTUDIO_DATA_DIR": str(tmp_path / "data"),
        "VSTUDIO_JWT_SECRET": "s" * 40,
    }


def test_replay_that_finished_reading_stops_while_redis_is_gone(tmp_path: Path) -> None:
    port = free_port()
    server = start_private_redis(tmp_path / "redis", port)
    recording = tmp_path / "chat.jsonl"
    lines = [
        orjson.dumps(
            {
                "id": f"twitch:{n}",
                "platform": "twitch",
                "username": "fan",
                "text": f"n{n}",
                "timestamp": 1_700_000_000_000 + n,
            }
        ).decode()
        for n in range(60)
    ]
    recording.write_text("\n".join(lines) + "\n")
    env = env_for(tmp_path, f"redis://127.0.0.1:{port}")
    create_session_record(env["VSTUDIO_REDIS_URL"], "stopper", SessionStatus.LIVE)
    replay = vstudio(
        "ingest",
        "replay",
        str(recording),
        "--session",
        "stopper",
        "--rate",
        "40",
        "--json",
        env=env,
    )
    try:
        published(port, "stopper")  # connected and publishing
        server.terminate()  # SIGKILL while the replay still reads
        wait_for_line(replay.stderr, "finished", 10)
        took = stop_time(replay)
    finally:
        replay.kill()
    assert took < STOP_WITHIN, took
    err = replay.stderr.read() if replay.stderr else ""
    assert replay.returncode == 1, err  # it says what it could not publish
    assert "not published" in err and "Traceback" not in err, err


def test_simulate_stops_while_redis_is_gone(tmp_path: Path) -> None:
    port = free_port()
    server = start_private_redis(tmp_path / "redis", port)
    env = env_for(tmp_path, f"redis://127.0.0.1:{port}")
    create_session_record(env["VSTUDIO_REDIS_URL"], "stopsim", SessionStatus.LIVE)
    simulate = vstudio("ingest", "simulate", "--session", "stopsim", "--rate", "50", env=env)
    try:
        published(port, "stopsim")
        server.terminate()  # reading goes on; publishing retries
        time.sleep(1.0)
        took = stop_time(simulate)
    finally:
        simulate.kill()
    assert took < STOP_WITHIN, took
    err = simulate.stderr.read() if simulate.stderr else ""
    assert "Traceback" not in err, err


def test_serve_stops_while_redis_is_gone(tmp_path: Path) -> None:
    port = free_port()
    server = start_private_redis(tmp_path / "redis", port)
    env = env_for(tmp_path, f"redis://127.0.0.1:{port}")
    serve = vstudio("serve", "--port", "0", env=env)
    try:
        wait_for_line(serve.stdout, "listening on", 20)
        server.terminate()
        time.sleep(1.0)
        took = stop_time(serve)
    finally:
        serve.kill()
    assert took < STOP_WITHIN, took
    assert serve.returncode == 0


def test_up_stops_after_its_embedded_valkey_died(tmp_path: Path) -> None:
    from tests.test_up import processes_mentioning, start_up

    data = tmp_path / "data"
    up, summary = start_up(data, free_port())
    try:
        record = orjson.loads((data / "redis" / "embedded.json").read_bytes())
        os.kill(record["pid"], signal.SIGKILL)  # the server and the chat worker lose Redis
        time.sleep(1.0)
        took = stop_time(up)
    finally:
        up.kill()
    assert took < STOP_WITHIN, took
    time.sleep(0.5)
    assert processes_mentioning(summary["session"]) == []  # no worker left behind
