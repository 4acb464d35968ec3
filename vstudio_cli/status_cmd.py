"""``vstudio status``: is ``vstudio up`` running on this data folder, and how is each part?"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from vstudio_cli.instance import data_dir_from, find_instance
from vstudio_cli.remote import AsJson, ExitCode, emit
from vstudio_cli.stack_status import probe, status_table

__all__ = ["DataDirOption", "status"]

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data folder of the vstudio up [VSTUDIO_DATA_DIR, else XDG]."),
]


def status(data_dir: DataDirOption = None, as_json: AsJson = False) -> None:
    """Show the running vstudio up: its URL and each part's state and msg/s.

    The parts are the server (/readyz), Redis (PING) and the worker that reads the demo's
    chat (its fleet record and the health of each source it reads).

    Exit codes: 0 running and every part healthy, 1 running with a part down or failing,
    4 nothing running on this data folder."""
    folder = data_dir_from(data_dir)
    instance = find_instance(folder)
    if not instance.running:
        note = " (a vstudio up was killed; its state file is stale)" if instance.stale else ""
        emit(
            {"running": False, "dataDir": str(folder), "stale": instance.stale},
            as_json,
            lambda: Console(stderr=True).print(f"Nothing is running on {folder}{note}."),
        )
        raise typer.Exit(ExitCode.NOT_FOUND)
    state = instance.state
    parts = asyncio.run(probe(state)) if state.get("state") == "ready" else []
    healthy = bool(parts) and all(part.healthy for part in parts)
    data: dict[str, Any] = {
        "running": True,
        "state": state.get("state"),
        "pid": state.get("pid"),
        "url": state.get("url"),
        "page": state.get("page"),
        "lan": state.get("lanPage"),
        "session": state.get("session"),
        "dataDir": str(folder),
        "uptime": _uptime(state),
        "parts": [part.wire() for part in parts],
        "healthy": healthy,
    }

    def human() -> None:
        out = Console()
        if state.get("state") != "ready":
            out.print(f"vstudio up is starting (pid {state.get('pid')}) on {folder}")
            return
        out.print(
            f"[bold]vstudio up[/] at {state['url']}  (pid {state['pid']}, up {data['uptime']} s,"
            f" data {folder})",
            highlight=False,
        )
        out.print(status_table(parts))

    emit(data, as_json, human)
    if state.get("state") == "ready" and not healthy:
        raise typer.Exit(ExitCode.FAILED)


def _uptime(state: dict[str, Any]) -> int | None:
    started = state.get("startedAt")
    return int(time.time() - started / 1000) if started else None
