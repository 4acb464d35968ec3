"""What the benchmarks share: the project on the import path, file limits, uvloop, a server
process started the way people start it, and CPU/RSS read from ``/proc`` for a process tree.

Import it first: ``from benchkit import ...`` puts the repository root on ``sys.path``, so a
benchmark runs as ``python bench/NAME.py`` from any folder without installing anything more.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = [
    "ROOT",
    "cpu_seconds",
    "cpu_split",
    "new_loop",
    "process_tree",
    "py_spy",
    "raise_file_limit",
    "rss_bytes",
    "start_server",
    "syscalls",
]


def raise_file_limit() -> None:
    """Thousands of sockets need the hard limit of open files, not the soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed, as the server runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def start_server(
    redis: str, data_dir: Path, secret: str, *, workers: int = 1, port: int = 0, **env: str
) -> tuple[subprocess.Popen[bytes], str]:
    """``vstudio serve --port PORT`` (0: a free one) for a benchmark: the process and its URL.

    Heartbeats are effectively off and logs are warnings only, so the figures are the fan-out's.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        "VSTUDIO_REDIS_URL": redis,
        "VSTUDIO_JWT_SECRET": secret,
        "VSTUDIO_DATA_DIR": str(data_dir),
        "VSTUDIO_MAX_VIEWERS": "1000000",
        "VSTUDIO_MAX_CONNECTIONS_PER_ADDRESS": "0",  # every viewer is 127.0.0.1
        "VSTUDIO_MAX_PENDING_CONNECTIONS_PER_ADDRESS": "0",  # and thousands connect at once
        "VSTUDIO_HEARTBEAT_INTERVAL": "600",
        "VSTUDIO_LOG_LEVEL": "WARNING",
        **env,
    }
    out = data_dir / "server.out"
    out.unlink(missing_ok=True)  # a restart must not read the last run's "listening on"
    command = [sys.executable, "-m", "vstudio_cli.main", "serve", "--port", str(port)]
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=ROOT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in out.read_text(errors="replace").splitlines():
            if "listening on " in line:
                return process, line.split("listening on ", 1)[1].split()[0]
        if process.poll() is not None:
            raise SystemExit(f"server exited: {out.read_text()}")
        time.sleep(0.1)
    raise SystemExit("server did not start")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (server workers are children of the parent)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            found += process_tree(int(child))
    return found


def cpu_seconds(*pids: int) -> float:
    """User + system CPU of these processes and their descendants, in seconds."""
    return sum(cpu_split(*pids))


def cpu_split(*pids: int) -> tuple[float, float]:
    """User and system CPU seconds of these processes and their descendants."""
    user = system = 0
    for pid in pids:
        for each in process_tree(pid):
            try:
                fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # it just exited
                continue
            user, system = user + int(fields[11]), system + int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def syscalls(*pids: int) -> tuple[int, int]:
    """Read and write system calls made so far by these processes and their descendants
    (``/proc/PID/io``): a socket ``write``/``writev`` each, so a round trip to Redis or a
    frame sent costs one."""
    reads = writes = 0
    for pid in pids:
        for each in process_tree(pid):
            try:
                lines = Path(f"/proc/{each}/io").read_text().splitlines()
            except OSError:
                continue
            fields = dict(line.split(": ", 1) for line in lines)
            reads, writes = reads + int(fields["syscr"]), writes + int(fields["syscw"])
    return reads, writes


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants."""
    total = 0
    for each in process_tree(pid):
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def py_spy(pid: int, out: str, rate: int) -> subprocess.Popen[bytes]:
    """py-spy recording one server and its workers into ``out`` (raw) until SIGINT."""
    command = ["py-spy", "record", "-r", str(rate), "-f", "raw", "-o", out, "-p", str(pid)]
    return subprocess.Popen(
        [*command, "--subprocesses", "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
