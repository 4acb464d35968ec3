"""What ``vstudio up`` does while it runs: watch its parts and tell the person.

A thread probes every part once a second (:mod:`vstudio_cli.stack_status`); the main thread
draws the live table on a terminal and prints one readable line when a part gets into trouble,
comes back, or stops. Signals reach the main thread only, so Ctrl-C is never lost in a probe.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, NoReturn

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from vstudio_cli.logfiles import last_problem, readable, tail
from vstudio_cli.processes import Child, ChildProcesses
from vstudio_cli.stack_status import HEALTHY, PartStatus, probe, status_table

__all__ = ["StatusWatch", "watch", "why_stopped"]


def why_stopped(child: Child) -> str:
    """One line: the exit code, the last problem it logged, and where its log is."""
    problem = last_problem(child.log_path)
    if problem is None:  # nothing in JSON: the last plain line (a traceback's last line, say)
        lines = [readable(line) for line in tail(child.log_path, 5) if line.strip()]
        problem = lines[-1] if lines else "no output"
    return f"exit {child.process.returncode}: {problem} (log: {child.log_path})"


class StatusWatch:
    """Probes every part once a second on its own thread (signals reach the main thread only)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.parts: list[PartStatus] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="up-status", daemon=True)

    def start(self) -> StatusWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.parts = asyncio.run(probe(self.state, timeout=1.5))
            except Exception as exc:  # the status must never take up down with it
                self.parts = [PartStatus("status", "unknown", detail=repr(exc))]
            self._stop.wait(1.0)


def watch(
    processes: ChildProcesses,
    server: Child,
    state: dict[str, Any],
    *,
    console: Console,
    notices: Console,
    live: bool,
) -> NoReturn:
    """Forever (until a signal's exception): a live status on a terminal, one readable line
    per worker problem; :class:`RuntimeError` when the server stops."""
    status = StatusWatch(state).start()
    reported: dict[str, str] = {}
    display = Live(console=console, auto_refresh=False, transient=True) if live else None
    say = console.print if live else notices.print

    def report(name: str, line: str) -> None:
        if reported.get(name) != line:
            reported[name] = line
            say(Text(f"{time.strftime('%H:%M:%S')} {name}: {line}", style="yellow"), soft_wrap=True)

    try:
        if display is not None:
            display.start()
        while True:
            for child in processes.exited():
                if child is server:  # nothing works without it
                    raise RuntimeError(f"the server stopped ({why_stopped(child)})")
                report(child.name, f"stopped ({why_stopped(child)})")
            for part in status.parts:
                if part.name in reported and reported[part.name].startswith("stopped"):
                    continue
                if part.state not in HEALTHY and part.state != "exited":
                    report(part.name, f"{part.state}" + (f": {part.detail}" if part.detail else ""))
                elif part.name in reported and part.healthy:
                    report(part.name, f"{part.state} again")
            if display is not None:
                display.update(Group(status_table(status.parts)), refresh=True)
            time.sleep(0.5)
    finally:
        if display is not None:
            display.stop()
        status.stop()
