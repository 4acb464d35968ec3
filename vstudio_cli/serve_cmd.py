"""``vstudio serve``: the realtime server (HTTP, WebSocket and SSE on one port)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from broker import BusUnavailable, EmbeddedServerError
from config import BrokerSettings, ServerSettings, load_settings
from config.logging import JsonLineFormatter
from server.serve import serve as run_server


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [8080]; 0 picks a free one.")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes sharing the port (SO_REUSEPORT) [1].")
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="Redis/Valkey URL (redis+cluster://HOST:PORT for a cluster); "
            "unset starts the embedded Valkey.",
        ),
    ] = None,
    certfile: Annotated[
        Path | None,
        typer.Option(help="PEM certificate (chain): serve HTTPS and WSS (VSTUDIO_CERTFILE)."),
    ] = None,
    keyfile: Annotated[
        Path | None, typer.Option(help="PEM private key of --certfile (VSTUDIO_KEYFILE).")
    ] = None,
) -> None:
    """Run the realtime server until Ctrl-C or SIGTERM (clients are told to reconnect)."""
    try:
        settings = load_settings(
            ServerSettings,
            host=host,
            port=port,
            workers=workers,
            certfile=certfile,
            keyfile=keyfile,
        )
        broker = load_settings(BrokerSettings, redis_url=redis_url)
    except (ValidationError, ValueError) as exc:
        typer.echo(f"vstudio serve: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    root = logging.getLogger()
    log_json = any(isinstance(h.formatter, JsonLineFormatter) for h in root.handlers)
    try:
        code = run_server(
            settings,
            broker,
            log_json=log_json,
            log_level=logging.getLevelName(root.level),
            announce=lambda line: typer.echo(line),
        )
    except (BusUnavailable, EmbeddedServerError) as exc:
        typer.echo(f"vstudio serve: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:  # Ctrl-C before the server's own handlers were in place
        raise typer.Exit(130) from None
    raise typer.Exit(code)
