"""``vstudio down``: stop the data folder's ``vstudio up``, detached or in another terminal."""

from __future__ import annotations

import os
import signal
import time
from typing import Annotated

import typer

from vstudio_cli.instance import data_dir_from, find_instance
from vstudio_cli.remote import AsJson, ExitCode, emit, err_console
from vstudio_cli.status_cmd import DataDirOption

__all__ = ["down"]


def down(
    data_dir: DataDirOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for everything to stop.")] = 30.0,
    as_json: AsJson = False,
) -> None:
    """Stop the running vstudio up, detached or in another terminal.

    Sends SIGTERM, as Ctrl-C would: the server, the workers and the embedded Redis it started
    stop; data and logs stay in the data folder.

    Exit codes: 0 stopped, 1 still running after --timeout, 4 nothing was running."""
    folder = data_dir_from(data_dir)
    instance = find_instance(folder)
    pid = instance.state.get("pid")
    if not instance.running or not isinstance(pid, int):
        stale = " (the state file of a killed vstudio up was left; it is harmless)"
        emit(
            {"stopped": False, "running": False, "dataDir": str(folder)},
            as_json,
            lambda: err_console.print(
                f"Nothing is running on {folder}" + (stale if instance.stale else "") + "."
            ),
        )
        raise typer.Exit(ExitCode.NOT_FOUND)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not find_instance(folder).running:
            emit(
                {"stopped": True, "pid": pid, "url": instance.state.get("url")},
                as_json,
                lambda: typer.echo(f"Stopped vstudio up (pid {pid}) on {folder}."),
            )
            return
        time.sleep(0.2)
    err_console.print(
        f"[red]vstudio up (pid {pid}) is still running after {timeout:.0f} s.[/] "
        f"See 'vstudio logs up server'; 'kill -9 {pid}' stops it for sure."
    )
    raise typer.Exit(ExitCode.FAILED)
