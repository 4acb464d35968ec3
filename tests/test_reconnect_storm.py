"""A bounded reconnect storm: viewers on real server processes, kill -9, restart, all back.

Runs ``bench/reconnect.py`` as people run it: real ``vstudio serve`` processes, real tickets and
WebSockets on loopback; the server is killed with SIGKILL while events are published, started
again on the same port, and every viewer must come back with ``recovered: true`` and every event
exactly once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.support.types import ServerFactory

BENCH = Path(__file__).resolve().parent.parent / "bench" / "reconnect.py"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_every_viewer_is_back_after_a_kill_with_nothing_missed_or_repeated(
    redis_url: str, workers: int
) -> None:
    viewers = 300
    size = ["--viewers", str(viewers), "--processes", "1", "--workers", str(workers)]
    run = subprocess.run(
        [sys.executable, str(BENCH), *size, "--during", "4", "--redis-url", redis_url, "--json"],
        capture_output=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    result = orjson.loads(run.stdout)
    assert result["connected"] == viewers
    assert result["back"] == viewers and result["gave_up"] == 0
    assert result["recovered"] == viewers and result["recovered_all"] is True
    assert result["missed"] == 0 and result["duplicated"] == 0
    assert result["events"] == 5 + 4 + 3
    assert result["back_all_seconds"] is not None


def test_the_bench_refuses_sizes_it_cannot_bound() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--viewers", "20000"], capture_output=True, timeout=60
    )
    assert run.returncode == 2
    assert b"--viewers must be between 1 and 15000" in run.stderr


def _listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port`` (``ss`` shows it as Send-Q)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, timeout=10, check=True
    )
    return int(out.stdout.split()[2])


@pytest.mark.parametrize("workers", [1, 2])
def test_the_server_listens_with_a_backlog_for_a_storm(
    server_factory: ServerFactory, workers: int
) -> None:
    """A storm sends thousands of SYNs within a second; with aiohttp's default backlog of 128
    the kernel drops most of them and the clients wait 1-3 s to retry."""
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    server = server_factory(workers=workers)
    assert _listen_backlog(server.port) == min(4096, somaxconn)
