"""``vstudio up`` as a person runs it: everything starts, the page and API answer, simulated
chat reaches a WebSocket client, and Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.support.loopback import free_port
from vstudio_cli.client import VStudioClient

pytestmark = pytest.mark.slow


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline and entry.name != str(os.getpid()):
                found.append(int(entry.name))
    return found


def start_up(
    data: Path, port: int, *args: str, **extra_env: str
) -> tuple[subprocess.Popen[str], dict]:
    env = {**os.environ, "VSTUDIO_DATA_DIR": str(data), "XDG_DATA_HOME": str(data)}
    for name in ("VSTUDIO_REDIS_URL", "VSTUDIO_CONFIG", "VSTUDIO_PORT"):
        env.pop(name, None)
    env.update(extra_env)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "vstudio_cli.main", "up", "--port", str(port)),
            *("--json", "--show-logins", *args),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise AssertionError(f"vstudio up printed nothing: {process.stderr.read()}")
    return process, json.loads(line)


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=60)


async def test_up_runs_everything_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    process, summary = start_up(data, port)
    try:
        base = f"http://127.0.0.1:{port}"
        assert summary["url"] == base
        record = json.loads((data / "redis" / "embedded.json").read_text())
        assert processes_mentioning(summary["session"])  # the simulate worker runs
        password = (data / "redis" / "password").read_text().strip()
        assert processes_mentioning(password) == []  # never on a command line (issue 13)

        async with aiohttp.ClientSession() as http:
            for path in ("/healthz", "/readyz", "/openapi.json", f"/s/{summary['session']}"):
                async with http.get(base + path) as response:
                    assert response.status == 200, path

        async with VStudioClient(base) as client:
            await client.login("viewer", summary["logins"]["viewer"])
            polls = await client.list_polls(summary["session"])
            assert any(poll["status"] == "active" for poll in polls)
            async with client.live(summary["session"]) as live:
                state = await live.wait_for("session.state")
                assert state["payload"]["session"]["status"] == "live"
                chat = await live.wait_for("chat.aggregate", timeout=15)
                platforms = {m["platform"] for m in chat["payload"]["messages"]}
                assert platforms <= {"twitch", "youtube", "tiktok", "discord"}
    finally:
        code = stop(process)
    assert code == 0, process.stderr.read() if process.stderr else ""
    time.sleep(0.5)
    assert processes_mentioning(summary["session"]) == []  # no ingest worker left
    assert processes_mentioning(f"--port {port}") == []  # no server left
    assert not Path(f"/proc/{record['pid']}").exists()  # embedded Valkey stopped


def test_up_again_reuses_the_data_and_moves_off_a_taken_port(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    process, first = start_up(data, port)
    assert stop(process) == 0
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        holder.bind(("127.0.0.1", port))
        holder.listen()
        process, second = start_up(data, port)
        try:
            assert second["url"] != first["url"]  # moved to a free port
            assert second["session"] == first["session"]  # same demo session
            assert second["logins"] == first["logins"]  # same accounts
        finally:
            assert stop(process) == 0


def test_port_zero_means_any_free_port() -> None:
    from vstudio_cli.up_cmd import choose_port

    port, moved = choose_port("127.0.0.1", 0)
    assert port > 0 and not moved


def test_a_platform_worker_that_gives_up_does_not_stop_everything(tmp_path: Path) -> None:
    """Real chat cannot be reached (here: nothing listens at the IRC URL); the worker gives up,
    `up` says so and keeps the server and the session running."""
    port = free_port()
    process, summary = start_up(
        tmp_path / "data",
        port,
        "--platform",
        "twitch:somechannel",
        VSTUDIO_TWITCH_IRC_URL=f"ws://127.0.0.1:{free_port()}",
        VSTUDIO_RECONNECT_ATTEMPTS="1",
    )
    try:
        time.sleep(6)  # the worker fails its one attempt and exits
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        with urllib.request.urlopen(f"{summary['url']}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        assert stop(process) == 0
    assert process.stderr is not None
    said = [line for line in process.stderr.read().splitlines() if "ingest-twitch" in line]
    stopped = [line for line in said if "ingest-twitch-somechannel: stopped (exit 1:" in line]
    assert stopped, said  # one readable line, with the reason and where the log is
    assert "ingest-twitch-somechannel.log" in stopped[0] and "{" not in stopped[0]
    assert all(not line.startswith("{") for line in said)  # the worker's own log stays in its file
