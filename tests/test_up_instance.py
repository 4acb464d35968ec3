"""One ``vstudio up`` per data folder, and ``status``, ``logs``, ``down`` that find it.

The lock is a real ``flock`` (two opens in one process conflict as two processes would); the
lifecycle runs real ``vstudio up`` processes, including a ``kill -9`` of the first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.loopback import free_port
from tests.test_up import processes_mentioning, start_up
from vstudio_cli.instance import AlreadyRunning, InstanceLock, find_instance, state_path


def test_a_held_lock_refuses_a_second_taker_with_the_first_ones_url(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path).acquire()
    first.write({"state": "ready", "url": "http://127.0.0.1:9"})
    assert state_path(tmp_path).stat().st_mode & 0o077 == 0  # it may name a Redis password
    with pytest.raises(AlreadyRunning) as refused:
        InstanceLock(tmp_path).acquire()
    assert "already running at http://127.0.0.1:9" in str(refused.value)
    assert find_instance(tmp_path).running
    first.release()
    assert not find_instance(tmp_path).running
    assert not state_path(tmp_path).exists()  # a clean stop leaves no state behind
    InstanceLock(tmp_path).acquire().release()


def test_a_state_file_without_its_lock_is_stale_and_taken_over(tmp_path: Path) -> None:
    state_path(tmp_path).write_text(json.dumps({"pid": 999_999, "url": "http://gone"}))
    instance = find_instance(tmp_path)
    assert not instance.running and instance.stale
    lock = InstanceLock(tmp_path).acquire()
    try:
        assert lock.stale["pid"] == 999_999  # what ``up`` reports as "did not stop cleanly"
        assert not state_path(tmp_path).exists()
    finally:
        lock.release()


def vstudio(data: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VSTUDIO_DATA_DIR": str(data), "XDG_DATA_HOME": str(data)}
    for name in ("VSTUDIO_REDIS_URL", "VSTUDIO_CONFIG", "VSTUDIO_PORT"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "vstudio_cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.mark.slow
def test_second_up_refuses_then_kill_9_then_detach_status_logs_down(tmp_path: Path) -> None:
    """About 20 s: three real ``up`` starts are the point of it."""
    data = tmp_path / "data"
    process, summary = start_up(data, free_port())
    try:
        second = vstudio(data, "up", "--port", str(free_port()))
        assert second.returncode == 5, second.stderr
        assert f"already running at {summary['url']}" in " ".join(second.stderr.split())
        children = [c["name"] for c in find_instance(data).state["children"]]
        assert children == ["server", "worker"]  # one worker reads the demo's sources
        detached = vstudio(data, "up", "--detach")
        assert detached.returncode == 5, detached.stderr
    finally:
        process.send_signal(signal.SIGKILL)  # no clean stop: the lock goes with the process
        process.wait(timeout=10)
    assert find_instance(data).stale
    left = json.loads((data / "redis" / "embedded.json").read_text())["pid"]
    assert Path(f"/proc/{left}").exists()  # the killed up's Valkey outlived it

    port = free_port()
    started = vstudio(data, "up", "--detach", "--json", "--port", str(port))
    assert started.returncode == 0, started.stderr
    ready = json.loads(started.stdout)
    assert ready["url"] == f"http://127.0.0.1:{port}"
    assert "logins" not in ready and Path(ready["loginsFile"]).exists()
    try:
        status = vstudio(data, "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        shown = json.loads(status.stdout)
        assert shown["running"] and shown["url"] == ready["url"]
        parts = {part["name"]: part["state"] for part in shown["parts"]}
        assert parts["server"] == "up" and parts["redis"] == "up"
        assert "worker" in parts
        overlays = json.loads(vstudio(data, "overlay", "urls", "--json").stdout)
        assert overlays["overlays"] == ready["overlays"]
        assert ready["overlays"]["poll"] == f"{ready['url']}/overlay/{ready['session']}/poll"
        up_log = (data / "logs" / "up.log").read_text()
        assert "did not stop cleanly" in up_log  # the killed one was noticed
        assert f"Stopped the embedded Valkey (pid {left})" in up_log
        assert not Path(f"/proc/{left}").exists()  # and its Valkey taken over, not leaked
        own = json.loads((data / "redis" / "embedded.json").read_text())["pid"]
        logs = vstudio(data, "logs", "server", "-n", "5")
        assert logs.returncode == 0 and "server" in logs.stdout
        assert not any(line.split("| ", 1)[-1].startswith("{") for line in logs.stdout.splitlines())
        missing = vstudio(data, "logs", "nonesuch")
        assert missing.returncode == 4 and "worker" in missing.stderr
    finally:
        stopped = vstudio(data, "down", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["stopped"] is True
    time.sleep(0.5)
    assert processes_mentioning(f"--port {port}") == []
    assert not Path(f"/proc/{own}").exists()  # down stopped the Valkey this up started
    again = vstudio(data, "down")
    assert again.returncode == 4 and "Nothing is running" in again.stderr
    assert vstudio(data, "status").returncode == 4
    assert vstudio(data, "overlay", "urls").returncode == 4  # no session, nothing to ask
