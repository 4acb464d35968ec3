"""``vstudio config``: what the effective settings are and where each one came from."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.table import Table

from broker.connection import redact_url
from config import (
    BrokerSettings,
    IngestSettings,
    PartSettings,
    ServerSettings,
    config_file_path,
    setting_sources,
)

app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)

PARTS: dict[str, type[PartSettings]] = {
    "broker": BrokerSettings,
    "server": ServerSettings,
    "ingest": IngestSettings,
}


def display_value(name: str, value: Any) -> Any:
    """A setting's value safe to print: secrets masked, URL passwords redacted."""
    if isinstance(value, SecretStr):
        return "********" if value.get_secret_value() else ""
    if isinstance(value, str) and name.endswith("_url"):
        return redact_url(value)
    if isinstance(value, list | int | float | bool) or value is None:
        return value
    return str(value)


def effective_settings(part: str) -> list[dict[str, Any]]:
    """Rows of ``{part, name, value, source, env}`` for one part."""
    cls = PARTS[part]
    settings = cls()
    sources = setting_sources(cls)
    return [
        {
            "part": part,
            "name": name,
            "value": display_value(name, getattr(settings, name)),
            "source": sources[name],
            "env": f"VSTUDIO_{name.upper()}",
        }
        for name in cls.model_fields
    ]


@app.command("show")
def show(
    part: Annotated[
        str | None, typer.Option(help="Only this part: broker, server or ingest.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Print every effective setting with its source (flag, env, file or default).

    Secrets are masked. Exit code 2 when a setting is invalid.
    """
    parts = [part] if part else list(PARTS)
    unknown = [name for name in parts if name not in PARTS]
    if unknown:
        raise typer.BadParameter(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    try:
        rows = [row for name in parts for row in effective_settings(name)]
    except (ValidationError, ValueError) as exc:
        typer.secho(f"invalid settings: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps({"configFile": str(config_file_path() or ""), "settings": rows}))
        return
    table = Table(title=f"Effective settings (config file: {config_file_path() or 'none'})")
    for column in ("part", "setting", "value", "source", "environment variable"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["part"], row["name"], str(row["value"]), row["source"], row["env"])
    Console().print(table)
