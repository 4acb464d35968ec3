"""``vstudio fleet status``: every source the sessions want, who reads it and how it goes.

It reads the fleet's keys in Redis directly (no server needed: the fleet runs without one), and
the view itself is :func:`broker.fleet_view.fleet_view`, a pure function. Its exit code lets a
script alert: 0 every wanted source has an owner, 9 at least one is unclaimed, 1 Redis did not
answer, 2 bad flags or settings.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from pydantic import ValidationError
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from broker.connection import TRANSIENT_ERRORS, BusUnavailable, connect
from broker.embedded import EmbeddedRedis
from broker.fleet_view import FleetView, fleet_view, read_fleet
from broker.sources import SourceStore
from config import BrokerSettings, IngestSettings, load_settings
from vstudio_cli.remote import emit, err_console

__all__ = ["UNCLAIMED_EXIT", "app", "render", "status"]

UNCLAIMED_EXIT = 9
"""The exit code when a wanted source has no owner (distinct from every other failure)."""

READ_ERRORS: tuple[type[BaseException], ...] = (BusUnavailable, RedisError, *TRANSIENT_ERRORS)

app = typer.Typer(help="See the worker fleet: sources, owners, workers.", no_args_is_help=True)
console = Console(soft_wrap=True)


def _settings(redis_url: str | None, fleet: str | None) -> tuple[BrokerSettings, IngestSettings]:
    try:
        broker = load_settings(BrokerSettings, redis_url=redis_url, fleet=fleet)
        return broker, load_settings(IngestSettings)
    except (ValidationError, ValueError) as exc:
        err_console.print(f"[red]Error:[/] invalid settings: {exc}")
        raise typer.Exit(2) from None


def _url(broker: BrokerSettings) -> str:
    """The configured Redis, else the embedded one that ``vstudio up`` runs; never a new one
    (an empty Redis started for the occasion would only say the fleet is empty)."""
    if broker.redis_url:
        return broker.redis_url
    url = EmbeddedRedis(broker.data_dir, port=broker.embedded_port).running_url()
    if url is None:
        err_console.print(
            "[red]Error:[/] no Redis to read: give --redis-url (or VSTUDIO_REDIS_URL), "
            "or start the stack with 'vstudio up'"
        )
        raise typer.Exit(1)
    return url


async def _read(url: str, broker: BrokerSettings, ingest: IngestSettings) -> FleetView:
    client = await connect(url, attempts=2, timeout=broker.connect_timeout)
    try:
        now = int(time.time() * 1000)
        wanted = await SourceStore(client, broker.fleet).wanted(
            now, ingest.fleet_lead_seconds * 1000
        )
        raw = await read_fleet(client, broker.fleet, wanted)
    finally:
        await client.aclose()
    return fleet_view(raw, ingest.fleet_redundancy)


def _lag(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms} ms"


def render(view: FleetView, fleet: str, out: Console) -> None:
    """The two tables: sources (unclaimed in red, fewer owners than wanted in yellow), workers."""
    sources = Table(title=f"fleet {fleet}: {len(view.sources)} wanted source(s)")
    for column in ("source", "sessions", "owners", "state", "msg/s", "lag", "last error"):
        sources.add_column(column, justify="right" if column in ("msg/s", "lag") else "left")
    for row in view.sources:
        style = "red" if row.unclaimed else "yellow" if len(row.owners) < row.redundancy else ""
        sources.add_row(  # Text, not markup: what workers report may hold [brackets]
            Text(row.id),
            Text(", ".join(row.sessions)),
            Text(f"{', '.join(row.owners) or 'none'} ({len(row.owners)}/{row.redundancy})"),
            Text(row.state),
            f"{row.msg_per_s:.1f}",
            _lag(row.lag_ms),
            Text(row.last_error),
            style=style,
        )
    if view.sources:
        out.print(sources)
    else:
        out.print(f"fleet {fleet}: no source is wanted (no live session declares one)")
    workers = Table(title=f"{sum(w.alive for w in view.workers)} live worker(s)")
    for column in ("worker", "host", "pid", "load", "capacity", "alive"):
        numeric = column in ("pid", "load", "capacity")
        workers.add_column(column, justify="right" if numeric else "left")
    for worker in view.workers:
        workers.add_row(
            Text(worker.id),
            Text(worker.host),
            str(worker.pid),
            str(worker.load),
            str(worker.capacity),
            "yes" if worker.alive else "gone",
            style="" if worker.alive else "dim",
        )
    if view.workers:
        out.print(workers)
    else:
        out.print("no worker has reported (start one with 'vstudio worker')")
    if view.unclaimed:
        line = Text(f"{len(view.unclaimed)} wanted source(s) have no worker: ", style="red")
        out.print(line.append(", ".join(row.id for row in view.unclaimed)))


@app.command("status")
def status(
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="Redis URL (default: VSTUDIO_REDIS_URL, else the embedded server of vstudio up).",
        ),
    ] = None,
    fleet: Annotated[
        str | None, typer.Option(help="Fleet name (default: VSTUDIO_FLEET, else default).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Every source the sessions want now, its sessions, owners, state, msg/s, lag and last
    error; then every worker with its host, pid, load and capacity.

    Exit codes: 0 every wanted source has an owner, 9 at least one has none (shown in red),
    1 Redis did not answer, 2 bad settings. Sources read by fewer workers than their
    redundancy are shown in yellow."""
    broker, ingest = _settings(redis_url, fleet)
    url = _url(broker)
    try:
        view = asyncio.run(_read(url, broker, ingest))
    except READ_ERRORS as exc:
        err_console.print(f"[red]Error:[/] could not read the fleet from Redis: {exc}")
        raise typer.Exit(1) from None
    body = {"fleet": broker.fleet, **view.wire()}
    emit(body, as_json, lambda: render(view, broker.fleet, console))
    if view.unclaimed:
        raise typer.Exit(UNCLAIMED_EXIT)
