"""``vstudio up`` as a person runs it: everything starts, the page and API answer, simulated
chat reaches a WebSocket client through one fleet worker, and Ctrl-C (or ``vstudio down``)
stops every process it started and leaves no lease behind."""

from __future__ import annotations

import asyncio
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

from broker import EmbeddedRedis, connect, keys
from tests.support.loopback import free_port
from vstudio_cli.client import VStudioClient
from vstudio_cli.instance import find_instance
from vstudio_cli.stack_status import alive

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
        children = {c["name"]: c["pid"] for c in find_instance(data).state["children"]}
        assert set(children) == {"server", "worker"} and alive(children["worker"])
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
    assert not alive(children["worker"])  # no worker left
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
        process, second = start_up(data, port, "--chat-rate", "5")
        try:
            assert second["url"] != first["url"]  # moved to a free port
            assert second["session"] == first["session"]  # same demo session
            assert second["logins"] == first["logins"]  # same accounts
            assert asyncio.run(declared(second)) == ["simulate:5"]  # simulate:3 withdrawn
        finally:
            assert stop(process) == 0


async def declared(summary: dict) -> list[str]:
    """The demo session's sources, as its artist reads them over REST."""
    async with VStudioClient(summary["url"]) as client:
        await client.login("artist", summary["logins"]["artist"])
        listing = await client.call("GET", f"/v1/vstudio/sessions/{summary['session']}/sources")
    return [source["id"] for source in listing["sources"]]


def test_port_zero_means_any_free_port() -> None:
    from vstudio_cli.up_cmd import choose_port

    port, moved = choose_port("127.0.0.1", 0)
    assert port > 0 and not moved


def test_a_platform_source_that_fails_does_not_stop_everything(tmp_path: Path) -> None:
    """Real chat cannot be reached (here: nothing listens at the IRC URL); the worker's reading
    of it gives up, ``up`` says so in one readable line and keeps everything running."""
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
        assert asyncio.run(declared(summary)) == ["twitch:somechannel"]  # no simulated chat
        time.sleep(6)  # the reading fails its one attempt
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        with urllib.request.urlopen(f"{summary['url']}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        assert stop(process) == 0
    assert process.stderr is not None
    said = [line for line in process.stderr.read().splitlines() if "worker" in line]
    failed = [line for line in said if "worker: failed: twitch:somechannel: " in line]
    assert failed, said  # one readable line, with the reason
    assert "gave up" in failed[0] and "{" not in failed[0]
    assert all(not line.startswith("{") for line in said)  # the worker's own log stays in its file


def vstudio(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VSTUDIO_DATA_DIR": str(data), "XDG_DATA_HOME": str(data)}
    for name in ("VSTUDIO_REDIS_URL", "VSTUDIO_CONFIG", "VSTUDIO_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "vstudio_cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


async def test_the_demo_chat_is_a_source_one_worker_reads_and_down_frees_it(
    tmp_path: Path,
) -> None:
    """The demo session declares ``simulate:3`` over REST, the one ``vstudio worker`` child
    holds its lease and its chat reaches a client; ``vstudio down`` stops the worker, and the
    data folder's Redis, opened again, holds no lease and no worker record (a lease TTL of 60 s
    here, so a lease left behind would still be there)."""
    data = tmp_path / "data"
    process, summary = start_up(data, free_port(), VSTUDIO_FLEET_LEASE_TTL="60")
    session = summary["session"]
    try:
        worker_pid = {c["name"]: c["pid"] for c in find_instance(data).state["children"]}["worker"]
        async with VStudioClient(summary["url"]) as client:
            await client.login("artist", summary["logins"]["artist"])
            path = f"/v1/vstudio/sessions/{session}/sources"
            deadline = time.monotonic() + 30
            while True:
                [source] = (await client.call("GET", path, params={"health": "1"}))["sources"]
                if source["state"] == "connected" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)
            assert source["id"] == "simulate:3" and source["state"] == "connected", source
            [owner] = source["owners"]
            assert f"-{worker_pid}-" in owner  # the up's own worker (host-pid-random)
            async with client.live(session) as live:
                chat = await live.wait_for("chat.aggregate", timeout=15)
            assert chat["payload"]["messages"]
        shown = vstudio(data, "status", "--json")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        worker = {part["name"]: part for part in json.loads(shown.stdout)["parts"]}["worker"]
        assert worker["pid"] == worker_pid and worker["state"] == "connected"
        assert [s["id"] for s in worker["sources"]] == ["simulate:3"] and worker["rate"] > 0
    finally:
        down = vstudio(data, "down", "--json")
        process.wait(timeout=60)
    assert down.returncode == 0 and process.returncode == 0, down.stderr
    assert not alive(worker_pid)
    with EmbeddedRedis(data) as embedded:  # the data folder's Redis, as up left it
        redis = await connect(embedded.url)
        try:
            assert await redis.get(keys.fleet_lease("default", "simulate:3", 0)) is None
            assert await redis.hgetall(keys.fleet_workers("default")) == {}
        finally:
            await redis.aclose()
