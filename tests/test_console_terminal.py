"""The console in a real pseudo-terminal with Textual's own driver, typed at like a person.

Some behaviour only shows with the real driver: keys that arrive in one burst (a fast typist,
a paste) are read together, and the headless pilot delivers them one by one instead.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.live_server import LiveServer

pytestmark = pytest.mark.slow

APP = """
from tests.test_console_snapshots import console
console(with_poll=False).run()
"""

ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[PX^_].*?\x1b\\\\|\x1b\][^\x07]*\x07")


class Terminal:
    """A child process on an 80x24 pseudo-terminal; what it drew, without escape codes."""

    def __init__(
        self, code: str, *, args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.master, slave = pty.openpty()
        os.set_blocking(self.master, False)
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        env = {
            **os.environ,
            "TERM": "xterm-256color",
            "COLUMNS": "80",
            "LINES": "24",
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *(args or [])],
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


def _console_command(*args: str, env: dict[str, str]) -> Terminal:
    code = "from vstudio_cli.main import app; app(prog_name='vstudio')"
    return Terminal(code, args=["console", *args], env=env)


async def test_the_command_uses_the_stored_login_and_quits_with_q(
    live_server: LiveServer, tmp_path: Path
) -> None:
    producer = f"producer-{uuid.uuid4().hex[:8]}"
    session = await live_server.live_session(producerIds=[producer], title="Command test")
    stored = tmp_path / "vstudio" / "credentials.json"
    stored.parent.mkdir()
    token = live_server.token(producer, "producer")
    stored.write_text(json.dumps({"server": live_server.base_url, "token": token}))
    env = {"XDG_CONFIG_HOME": str(tmp_path), "VSTUDIO_SERVER": "", "VSTUDIO_TOKEN": ""}
    terminal = _console_command("--session", session["id"], env=env)
    try:
        terminal.wait_for("as producer")
        assert "Command test" in terminal.text
        terminal.type("q", 0.5)
        assert terminal.process.wait(15) == 0
        assert "Traceback" not in terminal.text
    finally:
        terminal.close()


def test_sigterm_and_ctrl_c_stop_cleanly() -> None:
    for stop in ("sigterm", "ctrl+c"):
        terminal = Terminal(APP)
        try:
            terminal.wait_for("No poll running")
            if stop == "sigterm":
                terminal.process.send_signal(signal.SIGTERM)
            else:
                terminal.type("\x03", 0.2)
            assert terminal.process.wait(15) == 0, stop
            terminal.read(0.3)
            assert "Traceback" not in terminal.text
            assert b"\x1b[?1049l" in terminal.raw, "the terminal's own screen was not restored"
        finally:
            terminal.close()


def test_without_a_login_the_command_says_what_to_do(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path),
        "VSTUDIO_SERVER": "",
        "VSTUDIO_TOKEN": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "vstudio_cli.main", "console", "--session", "abc"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 3
    assert "vstudio login" in done.stderr and "Traceback" not in done.stderr


CONSOLE = [sys.executable, "-m", "vstudio_cli.main", "console"]


def test_an_unreachable_server_or_unknown_session_is_said_before_any_dashboard(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Both used to open a dashboard that quit with 0 (issue 18): now exit 6 and 4."""
    with socket.socket() as probe:  # a free port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path),
        "VSTUDIO_SERVER": "",
        "VSTUDIO_TOKEN": "",
    }
    token = live_server.token(f"producer-{uuid.uuid4().hex[:8]}", "producer")
    for server, code, says in (
        (f"http://127.0.0.1:{port}", 6, "Cannot reach the server"),
        (live_server.base_url, 4, "not found"),
    ):
        done = subprocess.run(
            [*CONSOLE, "--session", "deadbeef0000", "--server", server, "--token", token],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == code, done.stderr
        assert says in done.stderr and "Traceback" not in done.stderr
