"""Running ingestion workers in the foreground, and listing the running ones.

Every worker command builds its adapter (or, reading several channels over one connection,
its adapters) through :func:`run_worker`, which owns the rest: a bad
flag or missing credential refused with exit 2, Redis (the configured URL or the embedded
server), the :class:`~ingest.runtime.Worker`, the status line or JSON status lines,
SIGINT/SIGTERM, and exit codes (0 after a clean stop, 1 when the platform or Redis failed, 2 for
bad settings, 4 when the session or the channel does not exist).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any, NoReturn

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from broker import keys
from broker.connection import BusUnavailable, connect
from broker.embedded import EmbeddedServerError
from broker.models import now_ms
from broker.runtime import open_bus, redis_url
from config import BrokerSettings, IngestSettings, load_settings
from config.logging import configure_logging
from ingest.base import Adapter, AdapterFatal, AdapterState, TargetNotFound
from ingest.heartbeat import read_records
from ingest.runtime import Worker, WorkerGaveUp
from vstudio_cli.ingest.group import JsonOption, RedisUrlOption, ingest_settings

__all__ = ["print_status_table", "run_worker", "status", "status_line", "status_table"]

log = logging.getLogger("vstudio.vstudio_cli.ingest.runner")

STATUS_EVERY = 5.0
"""Seconds between JSON status lines."""

STATE_COLOURS: dict[str, str] = {
    AdapterState.CONNECTED: "green",
    AdapterState.RECONNECTING: "yellow",
    AdapterState.FAILED: "red",
}
"""The status line's colour of a state; any other is cyan."""


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run the worker on uvloop where it is installed (as the benchmark does), else asyncio."""
    try:
        import uvloop
    except ImportError:  # Windows, or a platform without wheels
        return asyncio.run(main)
    return uvloop.run(main)


def _broker_settings(redis_url_flag: str | None) -> BrokerSettings:
    try:
        return load_settings(BrokerSettings, redis_url=redis_url_flag)
    except (ValidationError, ValueError) as exc:
        typer.secho(f"invalid broker settings: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc


def _check_session(session_id: str) -> None:
    try:
        keys.session_prefix(session_id)
    except ValueError as exc:
        typer.secho(f"--session: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc


def run_worker(
    build: Callable[[], Adapter | list[Adapter]],
    session_id: str,
    *,
    refused: tuple[type[Exception], ...] = (ValueError,),
    settings: IngestSettings | None = None,
    redis_url_flag: str | None = None,
    json_output: bool = False,
    duration: float | None = None,
    worker_id: str | None = None,
) -> NoReturn:
    """Build the adapter with ``build()`` and run it as a worker publishing to ``session_id``
    until stopped; never returns normally but through ``typer.Exit`` with the exit code.

    ``build`` may return several adapters (channels sharing one platform connection): each
    runs as a worker of its own (its own dedupe, status and heartbeat), a channel that fails
    stops alone, and the command ends when all have stopped, with the highest exit code.

    The one runner of every worker command: ``build`` raising one of ``refused`` (a bad flag, a
    missing credential) is said in red with exit 2, before anything else is checked.
    ``settings`` defaults to the effective IngestSettings; ``redis_url_flag`` is the
    ``--redis-url`` value (``None``: environment, TOML, or the embedded server); ``json_output``
    prints JSON status lines to stdout and JSON logs to stderr; ``duration`` stops after that
    many seconds. Exit 0 after a clean stop (also on SIGINT/SIGTERM), 1 when the platform or
    Redis failed, 2 for bad settings, 4 when the session or the platform channel does not
    exist (:class:`~ingest.base.TargetNotFound`), 5 when the session has ended.
    """
    try:
        built = build()
    except refused as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(2) from exc
    settings = settings or ingest_settings()
    _check_session(session_id)
    broker = _broker_settings(redis_url_flag)
    if json_output:
        configure_logging(json_lines=True, level=logging.getLevelName(logging.root.level))
    code = 1
    try:
        with redis_url(broker) as url:
            code = _run_loop(
                _serve(
                    built if isinstance(built, list) else [built],
                    session_id,
                    settings,
                    broker,
                    url,
                    json_output,
                    duration,
                    worker_id,
                )
            )
    except (BusUnavailable, EmbeddedServerError) as exc:
        log.error("%s", exc)
    except KeyboardInterrupt:  # Ctrl-C before the worker installed its handlers
        code = 130
    raise typer.Exit(code)


async def _serve(
    adapters: list[Adapter],
    session_id: str,
    settings: IngestSettings,
    broker: BrokerSettings,
    url: str,
    json_output: bool,
    duration: float | None,
    worker_id: str | None,
) -> int:
    async with open_bus(broker, url) as bus:
        refused = await _session_refusal(bus.redis, session_id)
        if refused is not None:
            code, reason = refused
            log.error("%s", reason)
            return code
        workers = [
            Worker(adapter, bus, session_id, settings, worker_id=_nth(worker_id, n))
            for n, adapter in enumerate(adapters)
        ]

        def stop() -> None:
            for worker in workers:
                worker.stop()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        if duration is not None:
            loop.call_later(duration, stop)
        display = asyncio.create_task(_show_status(workers, json_output))
        try:
            codes = await asyncio.gather(*(_run(worker, json_output) for worker in workers))
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            display.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await display
        return max(codes)


def _nth(worker_id: str | None, n: int) -> str | None:
    """The id of the ``n``-th worker of a command given ``--worker-id``-like ``worker_id``."""
    return worker_id if worker_id is None or n == 0 else f"{worker_id}-{n}"


async def _run(worker: Worker, json_output: bool) -> int:
    """Run one worker to its end; its exit code (4: its channel does not exist, 1: failed)."""
    code = 0
    try:
        await worker.run()
    except TargetNotFound as exc:
        log.error("%s", exc)
        code = 4
    except (AdapterFatal, WorkerGaveUp) as exc:
        log.error("%s", exc)
        code = 1
    except Exception as exc:  # a bug: say what, keep the traceback for --log-level DEBUG
        log.error("the worker stopped on an unexpected error: %r", exc)
        log.debug("traceback", exc_info=exc)
        code = 1
    record = worker.record()
    if json_output:
        _print_json({"event": "stopped", **record})
    else:
        log.info(
            "stopped%s: %d received, %d published, %d duplicates, %d reconnects",
            f" ({record['target']})" if record.get("target") else "",
            record["received"],
            record["published"],
            record["duplicates"],
            record["reconnects"],
        )
    return code


async def _session_refusal(redis: Any, session_id: str) -> tuple[int, str] | None:
    """Exit code and reason when ``session_id`` is no session to publish to (issue 18: a
    mistyped id published to nobody and exited 0): 4 unknown, 5 ended."""
    raw = await redis.hget(keys.session(session_id), "status")
    if raw is None:
        return 4, (
            f"session {session_id} not found in this Redis: check the id "
            "(vstudio session list) and that --redis-url points where the server keeps it"
        )
    if orjson.loads(raw) == "ended":
        return 5, f"session {session_id} has ended: nothing published to it would reach anyone"
    return None


def _print_json(entry: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(entry).decode() + "\n")
    sys.stdout.flush()


def status_line(record: dict[str, Any], now: int) -> Text:
    """One line for people: state, messages/s, total, last message age, reconnects."""
    last = record.get("lastMessageAt")
    age = f"{max(0.0, (now - last) / 1000):.1f} s ago" if last else "none yet"
    state = str(record.get("state"))
    colour = STATE_COLOURS.get(state, "cyan")
    line = Text()
    line.append(f"● {state}", style=f"bold {colour}")
    line.append(f"  {record['platform']} {record['target']} → session {record['session']}")
    line.append(f"  {record['rate']:.1f} msg/s  total {record['received']:,}")
    line.append(f"  published {record['published']:,}  duplicates {record['duplicates']:,}")
    line.append(f"  last message {age}  reconnects {record['reconnects']}")
    if record.get("detail"):
        line.append(f"  ({record['detail']})", style="dim")
    return line


async def _show_status(workers: list[Worker], json_output: bool) -> None:
    """Refresh the rich status lines (one per worker) twice a second, or print a JSON line per
    worker every few seconds."""
    if json_output:
        while True:
            await asyncio.sleep(STATUS_EVERY)
            for worker in workers:
                _print_json({"event": "status", **worker.record()})
    console = Console(stderr=True)
    with (
        Live(console=console, auto_refresh=False, transient=True) as live,
        _logs_through(console),
    ):
        while True:
            now = now_ms()
            live.update(Group(*(status_line(w.record(), now) for w in workers)), refresh=True)
            await asyncio.sleep(0.5)


@contextlib.contextmanager
def _logs_through(console: Console) -> Iterator[None]:
    """Print log lines through the status line's console while it is shown: rich then puts
    each line above the status line. Through a console of their own they were written over it,
    and the status line's last clearing erased the end of the final error (issue 18)."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, RichHandler)]
    before = [h.console for h in handlers]
    for handler in handlers:
        handler.console = console
    try:
        yield
    finally:
        for handler, previous in zip(handlers, before, strict=True):
            handler.console = previous


# --- status -------------------------------------------------------------------------------------


async def _read_status(
    broker: BrokerSettings, url: str, session: str | None
) -> list[dict[str, Any]]:
    client = await connect(url, attempts=broker.connect_attempts, timeout=broker.connect_timeout)
    try:
        return await read_records(client, session)
    finally:
        await client.aclose()


STATUS_COLUMNS: dict[str, Callable[[dict[str, Any], int], str]] = {
    "worker": lambda r, now: str(r.get("workerId")),
    "host": lambda r, now: str(r.get("host")),
    "platform": lambda r, now: str(r.get("platform")),
    "target": lambda r, now: str(r.get("target")),
    "session": lambda r, now: str(r.get("session")),
    "state": lambda r, now: str(r.get("state")),
    "msg/s": lambda r, now: f"{r.get('rate', 0):.1f}",
    "total": lambda r, now: f"{r.get('received', 0):,}",
    "published": lambda r, now: f"{r.get('published', 0):,}",
    "last msg": lambda r, now: (
        f"{(now - r['lastMessageAt']) / 1000:.1f} s" if r.get("lastMessageAt") else "-"
    ),
    "reconnects": lambda r, now: str(r.get("reconnects", 0)),
}
"""The status table's columns and how each shows a worker's record."""
COMPACT_COLUMNS = ("worker", "platform", "session", "state", "msg/s", "total", "reconnects")
"""The columns a narrow terminal gets."""
WHOLE = ("worker", "session")
"""Columns never cut or wrapped: ids people copy."""


def status_table(records: list[dict[str, Any]], now: int, *, compact: bool = False) -> Table:
    """Every worker as a row: where it runs, what it reads, how it is doing."""
    table = Table(title=f"ingestion workers ({len(records)})")
    names = COMPACT_COLUMNS if compact else tuple(STATUS_COLUMNS)
    for name in names:
        cells = [STATUS_COLUMNS[name](record, now) for record in records]
        whole = name in WHOLE
        table.add_column(
            name,
            justify="right" if name in ("msg/s", "total") else "left",
            no_wrap=whole,
            min_width=max(map(len, cells), default=0) if whole else None,
        )
    for record in records:
        table.add_row(*(STATUS_COLUMNS[name](record, now) for name in names))
    return table


def print_status_table(records: list[dict[str, Any]], now: int) -> None:
    """The table at its natural width when piped (nothing cut), compact in a narrow terminal."""
    console = Console()
    table = status_table(records, now)
    needed = Measurement.get(console, console.options.update_width(1000), table).maximum
    if not console.is_terminal:
        console = Console(width=max(console.width, needed))
    elif needed > console.width:
        table = status_table(records, now, compact=True)
    console.print(table)


def status(
    redis_url_flag: RedisUrlOption = None,
    session: Annotated[
        str | None, typer.Option("--session", help="Only workers of this session.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List every running worker on every machine, from their heartbeat records in Redis."""
    broker = _broker_settings(redis_url_flag)
    try:
        with redis_url(broker) as url:
            records = asyncio.run(_read_status(broker, url, session))
    except (BusUnavailable, EmbeddedServerError) as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(1) from exc
    if as_json:
        _print_json({"workers": records, "now": now_ms()})
        return
    if not records:
        typer.echo("no ingestion workers are running" + (f" for {session}" if session else ""))
        return
    print_status_table(records, now_ms())
