"""``vstudio worker``: one fleet worker process, reading many sources on one event loop.

It claims the sources that live sessions declared (``vstudio session sources add``) by lease,
up to a fair share of the fleet, until SIGINT/SIGTERM; then it publishes what it holds and
releases every lease, so the rest of the fleet takes over at once. Exit 0 after a clean stop, 1
when Redis cannot be reached at start (as ``vstudio ingest``), 2 for bad settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.text import Text

from broker import keys
from broker.connection import BusUnavailable
from broker.embedded import EmbeddedServerError
from broker.runtime import open_bus, redis_url
from config import BrokerSettings, IngestSettings, load_settings
from config.logging import configure_logging
from ingest.fleet.worker import FleetWorker
from vstudio_cli.ingest.group import DurationOption, JsonOption, RedisUrlOption, ingest_settings
from vstudio_cli.ingest.runner import _logs_through, _print_json, _run_loop

__all__ = ["status_text", "worker"]

log = logging.getLogger("vstudio.vstudio_cli.worker")

STATUS_EVERY = 5.0
"""Seconds between JSON status lines."""


def status_text(status: dict[str, Any]) -> Text:
    """The status line: reachability, readings against the share, rate, buffer, errors."""
    line = Text()
    if status["reachable"]:
        line.append("● fleet", style="bold green")
    else:
        line.append("● Redis unreachable, buffering", style="bold yellow")
    line.append(f" {status['fleet']}  worker {status['worker']}")
    line.append(f"  reading {status['readings']} (share {status['share']}")
    line.append(f", capacity {status['capacity']}) of {status['wanted']} wanted")
    line.append(f"  {status['rate']:.1f} msg/s  published {status['published']:,}")
    if status["buffered"]:
        line.append(f"  buffered {status['buffered']:,}", style="yellow")
    if status["overflow"]:
        line.append(f"  overflow {status['overflow']:,}", style="red")
    if status["errors"]:
        line.append(f"  {len(status['errors'])} failing", style="red")
    return line


def worker(
    fleet: Annotated[
        str | None,
        typer.Option("--fleet", help="Fleet name (VSTUDIO_FLEET; default: default)."),
    ] = None,
    capacity: Annotated[
        int | None,
        typer.Option(
            "--capacity", min=1, help="Most sources read at once (VSTUDIO_FLEET_CAPACITY)."
        ),
    ] = None,
    redundancy: Annotated[
        int | None,
        typer.Option(
            "--redundancy",
            min=1,
            max=3,
            help="Workers reading each source at once, unless the source says (2: no loss "
            "when a worker dies).",
        ),
    ] = None,
    duration: DurationOption = None,
    redis_url_flag: RedisUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read the chat sources live sessions declared, sharing them with every other worker of
    the fleet by lease; stop with Ctrl-C (its sources fail over at once)."""
    try:
        broker = load_settings(BrokerSettings, redis_url=redis_url_flag, fleet=fleet)
        keys.fleet_prefix(broker.fleet)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            typer.secho(f"invalid setting {where}: {error['msg']}", err=True, fg="red")
        raise typer.Exit(2) from exc
    except ValueError as exc:
        typer.secho(f"invalid settings: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    settings = ingest_settings()
    if as_json:
        configure_logging(json_lines=True, level=logging.getLevelName(logging.root.level))
    code = 1
    try:
        with redis_url(broker) as url:
            code = _run_loop(_serve(broker, url, settings, capacity, redundancy, duration, as_json))
    except (BusUnavailable, EmbeddedServerError) as exc:
        log.error("%s", exc)
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)


async def _serve(
    broker: BrokerSettings,
    url: str,
    settings: IngestSettings,
    capacity: int | None,
    redundancy: int | None,
    duration: float | None,
    as_json: bool,
) -> int:
    async with open_bus(broker, url) as bus:
        fleet = FleetWorker(
            bus, settings, fleet=broker.fleet, capacity=capacity, redundancy=redundancy
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, fleet.stop)
        if duration is not None:
            loop.call_later(duration, fleet.stop)
        display = asyncio.create_task(_show(fleet, as_json))
        try:
            await fleet.run()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            display.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await display
        if as_json:
            _print_json({"event": "stopped", **fleet.status()})
        else:
            log.info("stopped: %d published, leases released", fleet.status()["published"])
        return 0


async def _show(fleet: FleetWorker, as_json: bool) -> None:
    if as_json:
        _print_json({"event": "started", **fleet.status()})
        while True:
            await asyncio.sleep(STATUS_EVERY)
            _print_json({"event": "status", **fleet.status()})
    console = Console(stderr=True)
    with (
        Live(console=console, auto_refresh=False, transient=True) as live,
        _logs_through(console),
    ):
        while True:
            live.update(status_text(fleet.status()), refresh=True)
            await asyncio.sleep(0.5)
