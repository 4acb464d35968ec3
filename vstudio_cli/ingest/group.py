"""The ``vstudio ingest`` command group and the options its commands share.

The commands are attached in :mod:`vstudio_cli.ingest`, in one list; nothing here imports them.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError

from config import IngestSettings, load_settings

__all__ = [
    "DurationOption",
    "JsonOption",
    "RedisUrlOption",
    "SessionOption",
    "app",
    "ingest_settings",
]

app = typer.Typer(
    help="Ingestion workers: platform chat normalized onto a session's bus.",
    no_args_is_help=True,
)

SessionOption = Annotated[
    str, typer.Option("--session", help="Session id the chat is published to.")
]
RedisUrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url", help="Redis URL (default: VSTUDIO_REDIS_URL, else the embedded server)."
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="JSON log and status lines instead of the status line.")
]
DurationOption = Annotated[
    float | None, typer.Option("--duration", min=0.1, help="Stop after this many seconds.")
]


def ingest_settings(**flags: Any) -> IngestSettings:
    """IngestSettings with the flags that were given on top; exit 2 with the reason if invalid."""
    try:
        return load_settings(IngestSettings, **flags)
    except (ValidationError, ValueError) as exc:
        typer.secho(f"invalid ingest settings: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
