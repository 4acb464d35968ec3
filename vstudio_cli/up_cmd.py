"""``vstudio up``: the whole system in one command, on embedded defaults.

Starts the embedded Valkey server (unless a Redis URL is given), the server, demo accounts, a
live demo session with simulated chat from four platforms and a first poll, prints where to go,
and stops everything on Ctrl-C or SIGTERM. Running it again reuses the data folder: the same
logins, the same demo session while it is not ended. ``--tls`` serves https and wss with a
self-signed certificate kept in the data folder (``tls/``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import ssl
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import aiohttp
import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from broker import BusUnavailable, EmbeddedServerError, connect
from broker.models import Role
from broker.runtime import redis_url
from config import BrokerSettings, ServerSettings, load_settings
from server.identity.accounts import AccountStore
from server.serve import find_free_port
from vstudio_cli.client import ApiError, VStudioClient
from vstudio_cli.processes import ChildProcesses, vstudio_command
from vstudio_cli.tls import ANY_ADDRESS, names_for, self_signed_pair

console = Console()
notices = Console(stderr=True)
"""Progress and errors go to stderr, so --json output stays one clean line."""

DEMO_TITLE = "V Studio demo"
DEMO_POLL = {
    "question": "Which song should open the encore?",
    "options": ["Midnight Drive", "Neon Rain", "Golden Hour"],
    "allowMultiple": False,
}
DEMO_USERS = {"artist": Role.ARTIST, "producer": Role.PRODUCER, "viewer": Role.VIEWER}


class Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def choose_port(host: str, wanted: int) -> tuple[int, bool]:
    """``wanted`` if free (0: any free port), else a free port; and whether it had to move."""
    chosen = find_free_port(host, wanted or None)
    return chosen, bool(wanted) and chosen != wanted


def demo_logins(data_dir: Path) -> dict[str, str]:
    """Passwords of the demo accounts, made once per data folder and kept there (0600)."""
    path = data_dir / "demo-logins.json"
    try:
        stored = json.loads(path.read_text())
        if set(stored) == set(DEMO_USERS):
            return stored
    except (FileNotFoundError, ValueError):
        pass
    logins = {name: secrets.token_urlsafe(9) for name in DEMO_USERS}
    data_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)  # touch leaves an existing file's mode as it was
    path.write_text(json.dumps(logins))
    return logins


async def ensure_accounts(url: str, logins: dict[str, str]) -> None:
    client = await connect(url)
    try:
        store = AccountStore(client)
        for name, role in DEMO_USERS.items():
            await store.add(name, logins[name], role, replace=True)
    finally:
        await client.aclose()


async def ensure_demo_session(
    base_url: str, logins: dict[str, str], trust: ssl.SSLContext | None = None
) -> dict[str, Any]:
    """The live demo session (reused when it exists), with an open first poll."""
    connector = aiohttp.TCPConnector(ssl=trust) if trust else None
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        VStudioClient(base_url, http=http) as client,
    ):
        await client.login("artist", logins["artist"])
        sessions = await client.list_sessions(artist_id="artist")
        session = next(
            (s for s in sessions if s["title"] == DEMO_TITLE and s["status"] != "ended"), None
        )
        if session is None:
            live = [s for s in sessions if s["status"] == "live"]
            for other in live:  # one live session per artist: make room for the demo
                await client.end_session(other["id"])
            session = await client.create_session(
                title=DEMO_TITLE,
                streamPlatform="twitch",
                allowGuests=True,
                producerIds=["producer"],
            )
        if session["status"] == "scheduled":
            session = await client.start_session(session["id"])
        polls = await client.list_polls(session["id"])
        if not any(poll.get("status") == "active" for poll in polls):
            await client.call("POST", f"/v1/vstudio/sessions/{session['id']}/polls", DEMO_POLL)
        return session


def wait_healthy(
    base_url: str,
    processes: ChildProcesses,
    timeout: float = 30.0,
    trust: ssl.SSLContext | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if processes.exited():
            return
        try:
            with urllib.request.urlopen(
                f"{base_url}/healthz", timeout=1, context=trust
            ) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the server did not answer {base_url}/healthz within {timeout:.0f} s")


def ws_url(base_url: str) -> str:
    """The WebSocket endpoint under ``base_url`` (wss for https)."""
    return base_url.replace("http", "ws", 1) + "/v1/vstudio/ws"


def panel(
    base_url: str,
    session: dict[str, Any],
    logins: dict[str, str],
    data: Path,
    certfile: Path | None = None,
) -> Panel:
    sid = session["id"]
    lines = [
        f"[bold]Fan page[/]       {base_url}/s/{sid}",
        f"[bold]Sessions[/]       {base_url}/",
        f"[bold]API[/]            {base_url}/openapi.json   metrics {base_url}/metrics",
        f"[bold]WebSocket[/]      {ws_url(base_url)}?ticket=...",
        "",
        "[bold]Logins[/] (username / password)",
        *(f"  {name:<9} {logins[name]}" for name in DEMO_USERS),
        "  guests may join the demo session without an account",
        "",
        "[bold]Producer console[/]",
        f"  vstudio login producer --server {base_url}",
        f"  vstudio console --session {sid}",
        "",
        "[bold]Ingest a real Twitch channel into this session[/]",
        f"  vstudio ingest twitch --session {sid} --channel CHANNEL",
        "  (or restart with: vstudio up --platform twitch:CHANNEL)",
        "",
        f"Data folder: {data}     Stop with Ctrl-C.",
    ]
    if certfile is not None:
        lines[-1:-1] = [
            f"[bold]Self-signed certificate[/] {certfile}",
            "  browsers warn once: accept it (on phones on this network too)",
            f"  for vstudio login/console: export SSL_CERT_FILE={certfile}",
            "",
        ]
    return Panel("\n".join(lines), title="V Studio realtime is up", expand=False)


def up(
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; a free one is picked if it is taken.")] = 8080,
    redis_url_flag: Annotated[
        str | None,
        typer.Option("--redis-url", help="Use this Redis instead of the embedded server."),
    ] = None,
    platform: Annotated[
        list[str] | None,
        typer.Option(
            "--platform",
            help="Ingest real chat instead of simulated: twitch:CHANNEL (repeatable).",
        ),
    ] = None,
    chat_rate: Annotated[float, typer.Option(help="Simulated chat messages per second.")] = 3.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the URLs as JSON.")] = False,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls", help="Serve https/wss with a self-signed certificate kept in the data folder."
        ),
    ] = False,
) -> None:
    """Run everything: Redis (embedded), the server, demo accounts, a live demo session with
    simulated chat and a first poll. Ctrl-C stops it all; run it again to reuse the data."""
    broker = load_settings(BrokerSettings, redis_url=redis_url_flag)
    server_settings = load_settings(ServerSettings, host=host, port=port)
    targets = _parse_platforms(platform or [])
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    exit_code = 0
    try:
        with redis_url(broker) as url:
            processes = ChildProcesses(broker.data_dir / "logs")
            try:
                wanted_port = server_settings.port
                _run(processes, url, host, wanted_port, broker, targets, chat_rate, as_json, tls)
            finally:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a 2nd Ctrl-C must not cut the stop
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                processes.stop()
    except Stop:
        pass
    except (BusUnavailable, EmbeddedServerError, ApiError, RuntimeError, TimeoutError) as exc:
        notices.print(f"[red]Error:[/] {exc}")
        exit_code = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    notices.print(f"Stopped. Data and logs are kept in {broker.data_dir}")
    raise typer.Exit(exit_code)


def _run(
    processes: ChildProcesses,
    url: str,
    host: str,
    port: int,
    broker: BrokerSettings,
    targets: list[tuple[str, str]],
    chat_rate: float,
    as_json: bool,
    tls: bool = False,
) -> None:
    """Start the server and the demo, then wait until a signal or a child's death."""
    chosen, moved = choose_port(host, port)
    if moved:
        notices.print(f"[yellow]Port {port} is taken; using {chosen}.[/]")
    serve_args = ["serve", "--host", host, "--port", str(chosen)]
    # in the environment, not argv: the URL may hold the embedded server's password (issue 13)
    redis_env = {"VSTUDIO_REDIS_URL": url}
    certfile: Path | None = None
    trust: ssl.SSLContext | None = None
    shown = host
    if tls:
        names = names_for(host)
        certfile, keyfile, made = self_signed_pair(broker.data_dir / "tls", names)
        if made:
            notices.print(f"Made a self-signed certificate: {certfile}")
        serve_args += ["--certfile", str(certfile), "--keyfile", str(keyfile)]
        trust = ssl.create_default_context(cafile=str(certfile))
        if host in ANY_ADDRESS:  # the certificate names no 0.0.0.0: show the LAN address
            shown = names[-1]
    scheme = "https" if tls else "http"
    base_url = f"{scheme}://{shown}:{chosen}"
    # this command itself talks to the server on loopback when it listens everywhere
    local_url = f"{scheme}://127.0.0.1:{chosen}" if host in ANY_ADDRESS else base_url
    server = processes.start("server", vstudio_command(*serve_args), env=redis_env)
    wait_healthy(local_url, processes, trust=trust)
    if server.process.poll() is not None:
        raise RuntimeError(f"the server stopped at start:\n{server.log_tail()}")
    logins = demo_logins(broker.data_dir)
    asyncio.run(ensure_accounts(url, logins))
    session = asyncio.run(ensure_demo_session(local_url, logins, trust))
    _start_ingest(processes, session["id"], url, targets, chat_rate)
    if as_json:
        summary = {
            "url": base_url,
            "page": f"{base_url}/s/{session['id']}",
            "ws": ws_url(base_url),
            "certfile": str(certfile) if certfile else None,
            "session": session["id"],
            "logins": logins,
            "dataDir": str(broker.data_dir),
        }
        typer.echo(json.dumps(summary))
    else:
        console.print(panel(base_url, session, logins, broker.data_dir, certfile))
    reported: set[str] = set()
    try:
        while True:
            for child in processes.exited():
                report = (
                    f"{child.name} stopped (exit {child.process.returncode}):\n{child.log_tail()}"
                )
                if child is server:  # nothing works without it
                    raise RuntimeError(report)
                if child.name not in reported:  # a chat source gave up; the rest carries on
                    reported.add(child.name)
                    notices.print(f"[yellow]{escape(report)}[/]", highlight=False)
            time.sleep(0.5)
    except Stop:
        notices.print("Stopping…")
        raise


def _parse_platforms(values: list[str]) -> list[tuple[str, str]]:
    targets = []
    for value in values:
        name, _, target = value.partition(":")
        if name != "twitch" or not target:
            raise typer.BadParameter(f"{value!r}: use twitch:CHANNEL", param_hint="--platform")
        targets.append((name, target))
    return targets


def _start_ingest(
    processes: ChildProcesses,
    session_id: str,
    url: str,
    targets: list[tuple[str, str]],
    chat_rate: float,
) -> None:
    common = ["--session", session_id, "--json"]
    redis_env = {"VSTUDIO_REDIS_URL": url}
    if not targets:
        processes.start(
            "ingest-simulate",
            vstudio_command("ingest", "simulate", *common, "--rate", str(chat_rate)),
            env=redis_env,
        )
    for name, target in targets:
        processes.start(
            f"ingest-{name}-{target}",
            vstudio_command("ingest", name, *common, "--channel", target),
            env=redis_env,
        )
