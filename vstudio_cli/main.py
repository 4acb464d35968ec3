"""The ``vstudio`` Typer app: global options and the command groups."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from config.logging import configure_logging
from vstudio_cli import (
    announce_cmd,
    config_cmd,
    console_cmd,
    doctor,
    down_cmd,
    fleet_cmd,
    ingest,
    ledger_cmd,
    logs_cmd,
    overlay_cmd,
    serve_cmd,
    session_cmd,
    status_cmd,
    token_cmd,
    up_cmd,
    user_cmd,
    whoami_cmd,
    worker_cmd,
)
from vstudio_cli.helptext import HelpfulGroup

app = typer.Typer(
    name="vstudio",
    help=(
        "V Studio realtime: polls, chat from every platform, reactions and tips next to a live "
        "stream.\n\nStart with 'vstudio doctor' to check this machine. Settings come from flags, "
        "VSTUDIO_* environment variables, a TOML file (--config) and defaults, in that order."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    cls=HelpfulGroup,
)
app.command("up")(up_cmd.up)
app.add_typer(config_cmd.app, name="config")
app.command("serve")(serve_cmd.serve)
app.add_typer(user_cmd.app, name="user")
app.add_typer(token_cmd.app, name="token")
app.command("doctor")(doctor.doctor)
app.add_typer(ingest.app, name="ingest")
app.command("login")(session_cmd.login)
app.command("logout")(session_cmd.logout)
app.add_typer(session_cmd.session_app, name="session")
app.add_typer(session_cmd.poll_app, name="poll")
app.command("console")(console_cmd.console)
app.command("announce")(announce_cmd.announce)
# issue 18: running up in the background, and what it serves
app.command("status")(status_cmd.status)
app.command("logs")(logs_cmd.logs)
app.command("down")(down_cmd.down)
app.add_typer(overlay_cmd.app, name="overlay")
app.command("whoami")(whoami_cmd.whoami)
app.add_typer(ledger_cmd.app, name="ledger")
app.add_typer(fleet_cmd.app, name="fleet")  # issue 15: seeing the worker fleet
app.command("worker")(worker_cmd.worker)


def package_version() -> str:
    try:
        return version("vstudio-realtime")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0+unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vstudio {package_version()}")
        raise typer.Exit()


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="VSTUDIO_CONFIG",
            help="TOML file with \\[broker], \\[server] and \\[ingest] tables.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    log_json: Annotated[
        bool | None,
        typer.Option(
            "--log-json/--log-text",
            envvar="VSTUDIO_LOG_JSON",
            help="Log JSON lines, or rich text (default: JSON unless stderr is a terminal).",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", envvar="VSTUDIO_LOG_LEVEL", help="DEBUG, INFO, ...")
    ] = "INFO",
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            envvar="VSTUDIO_PROFILE",
            help="Stored login every command uses (see 'vstudio login --profile').",
        ),
    ] = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Global options, applied before any command runs."""
    if config is not None:
        os.environ["VSTUDIO_CONFIG"] = str(config)
    if profile is not None:  # issue 18: read by vstudio_cli.remote.active_profile
        os.environ["VSTUDIO_PROFILE"] = profile
    configure_logging(json_lines=log_json, level=log_level)


if __name__ == "__main__":
    app()
