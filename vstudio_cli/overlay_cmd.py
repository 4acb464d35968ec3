"""``vstudio overlay urls``: the OBS browser-source overlays of a session.

Each overlay is a page of the server (``/overlay/{sessionId}/chat|poll|reactions``) with a
transparent background and no controls; its look is set by query parameters (see
docs/overlays.md). Without ``--session`` the command asks the data folder's running
``vstudio up`` for its demo session and URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from config import BrokerSettings, load_settings
from vstudio_cli.instance import find_instance
from vstudio_cli.remote import AsJson, ExitCode, emit, err_console, resolve

__all__ = ["OVERLAYS", "app", "overlay_urls"]

OVERLAYS = ("chat", "poll", "reactions")

app = typer.Typer(help="OBS browser-source overlays of a session.", no_args_is_help=True)


def overlay_urls(base_url: str, session_id: str) -> dict[str, str]:
    """Each overlay's URL under ``base_url``."""
    return {name: f"{base_url.rstrip('/')}/overlay/{session_id}/{name}" for name in OVERLAYS}


@app.command("urls")
def urls(
    session: Annotated[
        str | None,
        typer.Option("--session", help="Session id \\[the running vstudio up's demo session]."),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server", help="Server URL \\[the running up's, else VSTUDIO_SERVER/login]."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data folder of the vstudio up to ask.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Print the overlay URLs to paste into OBS (Sources > + > Browser).

    Exit codes: 0 printed, 4 no session given and no vstudio up running to ask."""
    state = find_instance(data_dir or load_settings(BrokerSettings).data_dir)
    running = state.state if state.running else {}
    session_id = session or running.get("session")
    if not session_id:
        err_console.print("[red]No session:[/] pass --session ID, or start one with 'vstudio up'.")
        raise typer.Exit(ExitCode.NOT_FOUND)
    base = server or running.get("url") or resolve(None, None)[0]
    found = overlay_urls(base, session_id)

    def human() -> None:
        table = Table(box=None, show_header=False)
        for name, url in found.items():
            table.add_row(name, url)
        Console().print(table)
        Console(stderr=True).print(
            "Add each as an OBS Browser source; style with query parameters, e.g. "
            "?fontSize=28&color=ffffff&maxLines=8 (docs/overlays.md).",
            style="dim",
        )

    emit({"session": session_id, "overlays": found}, as_json, human)
