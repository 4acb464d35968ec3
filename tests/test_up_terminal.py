"""``vstudio up`` on a terminal (a real pseudo-terminal): the banner, then a live status of each
part under it, and a worker that cannot reach its platform shown as its state and one readable
line, never as raw JSON log lines."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.loopback import free_port

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def read_until(fd: int, pattern: str, timeout: float, seen: list[str]) -> str:
    """Everything the terminal showed (escape codes removed) once ``pattern`` appears."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen.append(os.read(fd, 65536).decode(errors="replace"))
            except OSError:
                break
        text = ANSI.sub("", "".join(seen))
        if re.search(pattern, text):
            return text
    raise AssertionError(f"never saw {pattern!r}:\n{ANSI.sub('', ''.join(seen))[-3000:]}")


def test_up_on_a_terminal_shows_live_status_and_readable_worker_problems(tmp_path: Path) -> None:
    """About 12 s: one real up with a Twitch worker whose IRC server is not there."""
    env = {
        **os.environ,
        "VSTUDIO_DATA_DIR": str(tmp_path),
        "VSTUDIO_TWITCH_IRC_URL": f"ws://127.0.0.1:{free_port()}",
        "COLUMNS": "160",
        "LINES": "50",
        "TERM": "xterm-256color",
    }
    for name in ("VSTUDIO_REDIS_URL", "VSTUDIO_CONFIG", "VSTUDIO_PORT", "VSTUDIO_LOG_JSON"):
        env.pop(name, None)
    main, child = os.openpty()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "vstudio_cli.main", "up"),
            *("--port", str(free_port()), "--platform", "twitch:nonet"),
        ],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
        close_fds=True,
    )
    os.close(child)
    seen: list[str] = []
    try:
        shown = read_until(main, r"V Studio realtime is up(.|\n)*Stop with Ctrl-C", 60, seen)
        assert "passwords:" in shown and "--show-logins" in shown
        shown = read_until(main, r"worker\s+● (reconnecting|connecting)", 30, seen)
        assert re.search(r"server\s+● up", shown) and re.search(r"redis\s+● up", shown)
        shown = read_until(
            main, r"\d\d:\d\d:\d\d worker: reconnecting: .*connection lost", 30, seen
        )
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        with_stop = read_until(main, r"Stopped\.", 10, seen)
        os.close(main)
    assert code == 0
    raw = [line for line in with_stop.splitlines() if line.lstrip().startswith('{"')]
    assert raw == []  # the logs went to files
