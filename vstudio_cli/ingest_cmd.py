"""``vstudio ingest``: run one ingestion worker in the foreground, or list the running ones.

Every worker subcommand builds an adapter and hands it to :func:`run_worker`, which owns the
rest: Redis (the configured URL or the embedded server), the :class:`~ingest.runtime.Worker`,
the status line or JSON status lines, SIGINT/SIGTERM, and exit codes (0 after a clean stop,
1 when the platform or Redis failed, 2 for bad settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from broker import keys
from broker.connection import BusUnavailable, connect
from broker.embedded import EmbeddedServerError
from broker.models import now_ms
from broker.runtime import open_bus, redis_url
from config import BrokerSettings, IngestSettings, load_settings
from config.logging import configure_logging
from ingest.base import Adapter, AdapterFatal
from ingest.heartbeat import read_records
from ingest.runtime import Worker, WorkerGaveUp

__all__ = [
    "JsonOption",
    "RedisUrlOption",
    "SessionOption",
    "app",
    "ingest_settings",
    "run_worker",
]

log = logging.getLogger("vstudio.ingest")

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

STATUS_EVERY = 5.0
"""Seconds between JSON status lines."""


def ingest_settings(**flags: Any) -> IngestSettings:
    """IngestSettings with the flags that were given on top; exit 2 with the reason if invalid."""
    try:
        return load_settings(IngestSettings, **flags)
    except (ValidationError, ValueError) as exc:
        typer.secho(f"invalid ingest settings: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc


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


def refuse(exc: Exception) -> NoReturn:
    """A bad flag or a missing credential: say it in red, exit 2."""
    typer.secho(str(exc), err=True, fg="red")
    raise typer.Exit(2) from exc


def _check_session(session_id: str) -> None:
    try:
        keys.session_prefix(session_id)
    except ValueError as exc:
        typer.secho(f"--session: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc


def run_worker(
    adapter: Adapter,
    session_id: str,
    *,
    settings: IngestSettings | None = None,
    redis_url_flag: str | None = None,
    json_output: bool = False,
    duration: float | None = None,
    worker_id: str | None = None,
) -> None:
    """Run ``adapter`` as a worker publishing to ``session_id`` until stopped; never returns
    normally but through ``typer.Exit`` with the exit code.

    Stable signature for every platform subcommand: ``settings`` defaults to the effective
    IngestSettings; ``redis_url_flag`` is the ``--redis-url`` value (``None``: environment, TOML,
    or the embedded server); ``json_output`` prints JSON status lines to stdout and JSON logs to
    stderr; ``duration`` stops after that many seconds. Exit 0 after a clean stop (also on
    SIGINT/SIGTERM), 1 when the platform or Redis failed, 2 for bad settings.
    """
    _check_session(session_id)
    settings = settings or ingest_settings()
    broker = _broker_settings(redis_url_flag)
    if json_output:
        configure_logging(json_lines=True, level=logging.getLevelName(logging.root.level))
    code = 1
    try:
        with redis_url(broker) as url:
            code = _run_loop(
                _serve(adapter, session_id, settings, broker, url, json_output, duration, worker_id)
            )
    except (BusUnavailable, EmbeddedServerError) as exc:
        log.error("%s", exc)
    except KeyboardInterrupt:  # Ctrl-C before the worker installed its handlers
        code = 130
    raise typer.Exit(code)


async def _serve(
    adapter: Adapter,
    session_id: str,
    settings: IngestSettings,
    broker: BrokerSettings,
    url: str,
    json_output: bool,
    duration: float | None,
    worker_id: str | None,
) -> int:
    async with open_bus(broker, url) as bus:
        worker = Worker(adapter, bus, session_id, settings, worker_id=worker_id)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, worker.stop)
        if duration is not None:
            loop.call_later(duration, worker.stop)
        display = asyncio.create_task(_show_status(worker, json_output))
        code = 0
        try:
            await worker.run()
        except (AdapterFatal, WorkerGaveUp) as exc:
            log.error("%s", exc)
            code = 1
        except Exception as exc:  # a bug: say what, keep the traceback for --log-level DEBUG
            log.error("the worker stopped on an unexpected error: %r", exc)
            log.debug("traceback", exc_info=exc)
            code = 1
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            display.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await display
        record = worker.record()
        if json_output:
            _print_json({"event": "stopped", **record})
        else:
            log.info(
                "stopped: %d received, %d published, %d duplicates, %d reconnects",
                record["received"],
                record["published"],
                record["duplicates"],
                record["reconnects"],
            )
        return code


def _print_json(entry: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(entry).decode() + "\n")
    sys.stdout.flush()


def status_line(record: dict[str, Any], now: int) -> Text:
    """One line for people: state, messages/s, total, last message age, reconnects."""
    last = record.get("lastMessageAt")
    age = f"{max(0.0, (now - last) / 1000):.1f} s ago" if last else "none yet"
    state = str(record.get("state"))
    colour = {"connected": "green", "reconnecting": "yellow", "failed": "red"}.get(state, "cyan")
    line = Text()
    line.append(f"● {state}", style=f"bold {colour}")
    line.append(f"  {record['platform']} {record['target']} → session {record['session']}")
    line.append(f"  {record['rate']:.1f} msg/s  total {record['received']:,}")
    line.append(f"  published {record['published']:,}  duplicates {record['duplicates']:,}")
    line.append(f"  last message {age}  reconnects {record['reconnects']}")
    if record.get("detail"):
        line.append(f"  ({record['detail']})", style="dim")
    return line


async def _show_status(worker: Worker, json_output: bool) -> None:
    """Refresh the rich status line twice a second, or print a JSON line every few seconds."""
    if json_output:
        while True:
            await asyncio.sleep(STATUS_EVERY)
            _print_json({"event": "status", **worker.record()})
    console = Console(stderr=True)
    with Live(console=console, auto_refresh=False, transient=True) as live:
        while True:
            live.update(status_line(worker.record(), now_ms()), refresh=True)
            await asyncio.sleep(0.5)


# --- status -------------------------------------------------------------------------------------


async def _read_status(broker: BrokerSettings, url: str, session: str | None) -> list[dict]:
    client = await connect(url, attempts=broker.connect_attempts, timeout=broker.connect_timeout)
    try:
        return await read_records(client, session)
    finally:
        await client.aclose()


def status_table(records: list[dict[str, Any]], now: int) -> Table:
    """Every worker as a row: where it runs, what it reads, how it is doing."""
    table = Table(title=f"ingestion workers ({len(records)})")
    for column in (
        "worker",
        "host",
        "platform",
        "target",
        "session",
        "state",
        "msg/s",
        "total",
        "published",
        "last msg",
        "reconnects",
    ):
        table.add_column(column, justify="right" if column in ("msg/s", "total") else "left")
    for record in records:
        last = record.get("lastMessageAt")
        table.add_row(
            str(record.get("workerId")),
            str(record.get("host")),
            str(record.get("platform")),
            str(record.get("target")),
            str(record.get("session")),
            str(record.get("state")),
            f"{record.get('rate', 0):.1f}",
            f"{record.get('received', 0):,}",
            f"{record.get('published', 0):,}",
            f"{(now - last) / 1000:.1f} s" if last else "-",
            str(record.get("reconnects", 0)),
        )
    return table


@app.command("status")
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
    Console().print(status_table(records, now_ms()))


# --- workers ------------------------------------------------------------------------------------


@app.command("simulate")
def simulate(
    session: SessionOption,
    rate: Annotated[float, typer.Option("--rate", min=0.01, help="Messages per second.")] = 20.0,
    duration: DurationOption = None,
    seed: Annotated[int | None, typer.Option(help="Seed for repeatable chat.")] = None,
    bursts: Annotated[bool, typer.Option(help="Bursts of 4x the rate now and then.")] = True,
    redis_url_flag: RedisUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish realistic synthetic chat from all four platforms at --rate messages/s."""
    from ingest.simulate import SimulatedChat

    adapter = SimulatedChat(rate, seed=seed, bursts=bursts)
    run_worker(
        adapter,
        session,
        settings=ingest_settings(),
        redis_url_flag=redis_url_flag,
        json_output=as_json,
        duration=duration,
    )


@app.command("twitch")
def twitch(
    session: SessionOption,
    channel: Annotated[str, typer.Option("--channel", help="Twitch channel name.")],
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="User access token (VSTUDIO_TWITCH_TOKEN): chat:read for IRC, "
            "user:read:chat for --eventsub. Without it IRC reads anonymously.",
        ),
    ] = None,
    nick: Annotated[
        str | None, typer.Option("--nick", help="IRC: the account the --token belongs to.")
    ] = None,
    irc_url: Annotated[
        str | None,
        typer.Option("--irc-url", help="IRC-over-WebSocket URL (VSTUDIO_TWITCH_IRC_URL)."),
    ] = None,
    eventsub: Annotated[
        bool, typer.Option("--eventsub", help="EventSub WebSocket through twitchio, not IRC.")
    ] = False,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="EventSub: app id (VSTUDIO_TWITCH_CLIENT_ID).")
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            "--client-secret", help="EventSub: app secret (VSTUDIO_TWITCH_CLIENT_SECRET)."
        ),
    ] = None,
    refresh_token: Annotated[
        str | None,
        typer.Option("--refresh-token", help="EventSub: refresh token of --token."),
    ] = None,
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="EventSub: Helix base URL.")
    ] = None,
    auth_url: Annotated[
        str | None, typer.Option("--auth-url", help="EventSub: OAuth base URL (id.twitch.tv).")
    ] = None,
    eventsub_url: Annotated[
        str | None, typer.Option("--eventsub-url", help="EventSub: WebSocket URL.")
    ] = None,
    duration: DurationOption = None,
    redis_url_flag: RedisUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read a Twitch channel's chat over IRC-over-WebSocket (anonymous unless --token), or
    with --eventsub through twitchio's EventSub WebSocket (app credentials and a user token)."""
    settings = ingest_settings(twitch_token=token, twitch_nick=nick, twitch_irc_url=irc_url)
    adapter: Adapter
    try:
        if eventsub:
            from ingest.twitch_eventsub import EventSubSettings, TwitchEventSub

            es_settings = load_settings(
                EventSubSettings,
                twitch_client_id=client_id,
                twitch_client_secret=client_secret,
                twitch_refresh_token=refresh_token,
                twitch_api_url=api_url,
                twitch_auth_url=auth_url,
                twitch_eventsub_url=eventsub_url,
            )
            secret = settings.twitch_token.get_secret_value() if settings.twitch_token else ""
            adapter = TwitchEventSub(channel, secret, es_settings)
        else:
            from ingest.twitch import TwitchChat

            adapter = TwitchChat(channel, settings)
    except (ValidationError, ValueError) as exc:
        refuse(exc)
    run_worker(
        adapter,
        session,
        settings=settings,
        redis_url_flag=redis_url_flag,
        json_output=as_json,
        duration=duration,
    )


@app.command("replay")
def replay(
    file: Annotated[
        Path, typer.Argument(help="JSON lines, one NormalizedChatMessage each.", dir_okay=False)
    ],
    session: SessionOption,
    speed: Annotated[
        float, typer.Option("--speed", min=0, help="Recorded timing sped up X times; 0: no waits.")
    ] = 1.0,
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.01, help="A fixed rate instead, messages/s.")
    ] = None,
    duration: DurationOption = None,
    redis_url_flag: RedisUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish a recorded chat file at its recorded speed (or --speed X / --rate R).

    Bad lines are reported with their line number and skipped; the rest plays on.
    """
    from ingest.replay import ReplayFile

    try:
        adapter = ReplayFile(file, speed=speed, rate=rate)
    except ValueError as exc:
        refuse(exc)
    run_worker(
        adapter,
        session,
        settings=ingest_settings(),
        redis_url_flag=redis_url_flag,
        json_output=as_json,
        duration=duration,
    )


from vstudio_cli import ingest_platforms  # noqa: E402, F401
