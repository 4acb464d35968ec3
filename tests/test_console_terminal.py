"""The console in a real pseudo-terminal with Textual's own driver, typed at like a person.

Some behaviour only shows with the real driver: keys that arrive in one burst (a fast typist,
a paste) are read together, and the headless pilot delivers them one by one instead.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

APP = """
from tests.test_console_snapshots import console
console(with_poll=False).run()
"""

ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[PX^_].*?\x1b\\\\|\x1b\][^\x07]*\x07")


class Terminal:
    """A child process on an 80x24 pseudo-terminal; what it drew, without escape codes."""

    def __init__(self, code: str) -> None:
        self.master, slave = pty.openpty()
        os.set_blocking(self.master, False)
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            start_new_session=True,
        )
        os.close(slave)
        self.raw = b""

    def read(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.raw += os.read(self.master, 65536)
                except OSError:
                    return

    @property
    def text(self) -> str:
        return ANSI.sub(b"", self.raw).decode(errors="replace")

    def type(self, keys: str, pause: float = 0.4) -> None:
        os.write(self.master, keys.encode())
        self.read(pause)

    def wait_for(self, needle: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            assert time.monotonic() < deadline, f"{needle!r} never appeared"
            self.read(0.2)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def test_poll_form_keeps_up_with_keys_typed_ahead() -> None:
    terminal = Terminal(APP)
    try:
        terminal.wait_for("No poll running")
        terminal.type("p", 1.0)
        terminal.type("Encore?\rYes\rAgain!\t30", 1.5)  # one burst: Enter and Tab move first
        terminal.raw = b""
        terminal.type("\x13", 1.0)  # ctrl+s: create
        terminal.wait_for("Not connected to a server")
        assert "Options:" not in terminal.text
    finally:
        terminal.close()
