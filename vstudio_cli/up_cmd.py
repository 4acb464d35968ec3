"""``vstudio up``: the whole system in one command, on embedded defaults.

Starts the embedded Valkey server (unless a Redis URL is given), the server, demo accounts, a
live demo session with simulated chat from four platforms and a first poll, prints where to go,
and stops everything on Ctrl-C, SIGTERM or ``vstudio down``. The demo chat is a fleet source of
the demo session (``simulate:RATE``, or the ``--platform`` channels), declared over REST as a
person would, and read by one local ``vstudio worker``, as production reads chat. Running it
again reuses the data folder: the same logins, the same demo session while it is not ended.
``--tls`` serves https and wss with a self-signed certificate kept in the data folder
(``tls/``).

One ``up`` per data folder (:mod:`vstudio_cli.instance`): a second one says where the first
runs and exits 5. ``--detach`` runs it in the background; ``status``, ``logs`` and ``down``
find it through the state file. On a terminal a live status of every part sits under the
banner; what the parts log goes to ``DATA/logs/PART.log``, never raw to the terminal.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import aiohttp
import typer
from rich.console import Console
from rich.markup import escape

from broker import BusUnavailable, EmbeddedRedis, EmbeddedServerError, connect
from broker.models import Role
from broker.runtime import redis_url
from config import BrokerSettings, ServerSettings, load_settings
from server.identity.accounts import AccountStore
from server.serve import find_free_port
from vstudio_cli.client import ApiError, VStudioClient
from vstudio_cli.instance import AlreadyRunning, InstanceLock, find_instance
from vstudio_cli.lan import lan_address
from vstudio_cli.logfiles import readable, tail
from vstudio_cli.overlay_cmd import overlay_urls
from vstudio_cli.processes import ChildProcesses, vstudio_command
from vstudio_cli.remote import ExitCode
from vstudio_cli.sources_cmd import sources_path
from vstudio_cli.stack_status import alive
from vstudio_cli.tls import ANY_ADDRESS, names_for, self_signed_pair
from vstudio_cli.up_banner import show_ready, shown_redis
from vstudio_cli.up_watch import watch, why_stopped

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


def demo_sources(targets: list[tuple[str, str]], chat_rate: float) -> list[dict[str, str]]:
    """The sources the demo session declares: the ``--platform`` channels, else simulated chat
    at ``chat_rate`` (the ``simulate`` source kind, made-up chat that no platform sends)."""
    if targets:
        return [{"platform": name, "target": target} for name, target in targets]
    return [{"platform": "simulate", "target": f"{chat_rate:g}"}]


async def declare_sources(
    client: VStudioClient, session_id: str, wanted: list[dict[str, str]]
) -> list[str]:
    """Make the session's sources exactly ``wanted`` over REST (as ``vstudio session sources``
    does), so a rerun with another ``--chat-rate`` or ``--platform`` leaves nothing stale; the
    ids declared."""
    declared = await client.call("GET", sources_path(session_id))
    ids = []
    for body in wanted:
        answer = await client.call("POST", sources_path(session_id), body)
        ids.append(str(answer["source"]["id"]))
    for source in declared["sources"]:
        if source["id"] not in ids:
            await client.call("DELETE", sources_path(session_id, source["id"]))
    return ids


async def ensure_demo_session(
    base_url: str,
    logins: dict[str, str],
    trust: ssl.SSLContext | None = None,
    sources: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The live demo session (reused when it exists), with an open first poll and ``sources``
    declared for the fleet (under ``sourceIds``)."""
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
        if sources is not None:
            session["sourceIds"] = await declare_sources(client, session["id"], sources)
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
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            "-d",
            help="Run in the background; print the banner and return. Stop with vstudio down.",
        ),
    ] = False,
    lan: Annotated[
        bool,
        typer.Option(
            "--lan",
            help="Serve phones on this network: listen on every interface, print the LAN "
            "address and a QR code of the fans' page.",
        ),
    ] = False,
    show_logins: Annotated[
        bool,
        typer.Option(
            "--show-logins",
            help="Print the demo passwords (they are hidden by default, for shared screens).",
        ),
    ] = False,
) -> None:
    """Run everything here: Redis, the server, a live demo session with chat and a poll.

    Starts the embedded Redis (unless --redis-url), the server, demo accounts, a live demo
    session with simulated chat (or --platform twitch:CHANNEL) and a first poll. Ctrl-C or
    'vstudio down' stops it all; run it again to reuse the data. One up per data folder: a
    second one says where the first runs. See docs/running.md.

    Exit codes: 0 stopped cleanly, 1 failed, 5 already running on this data folder."""
    broker = load_settings(BrokerSettings, redis_url=redis_url_flag)
    server_settings = load_settings(ServerSettings, host=host, port=port)
    targets = _parse_platforms(platform or [])
    if lan:
        host = "0.0.0.0"  # every interface: phones reach the LAN address, this machine 127.0.0.1
    if detach:
        forwarded = _forwarded_args(
            host, server_settings.port, redis_url_flag, platform or [], chat_rate, tls, lan
        )
        raise typer.Exit(_detach(forwarded, broker.data_dir, as_json, show_logins))
    lock = InstanceLock(broker.data_dir)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        _say_already_running(exc)
        raise typer.Exit(ExitCode.CONFLICT) from None
    if lock.stale:
        notices.print(
            f"[yellow]An earlier vstudio up (pid {lock.stale.get('pid', '?')}) on this data "
            "folder did not stop cleanly; starting afresh.[/]"
        )
        _stop_left_embedded(lock.stale)
    starting = {"state": "starting", "dataDir": str(broker.data_dir)}
    lock.write(starting)
    embedded_before = None if broker.redis_url else EmbeddedRedis(broker.data_dir).stale()
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    exit_code = 0
    try:
        with redis_url(broker) as url:
            if not broker.redis_url and embedded_before is None:  # ours: a kill -9 leaves it
                owned = EmbeddedRedis(broker.data_dir).stale()
                lock.write(starting | {"embeddedPid": owned["pid"] if owned else None})
            processes = ChildProcesses(broker.data_dir / "logs")
            try:
                wanted_port = server_settings.port
                options = UpOptions(host, wanted_port, targets, chat_rate, as_json, tls, lan)
                _run(processes, url, broker, options, lock, show_logins)
            finally:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a 2nd Ctrl-C must not cut the stop
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                processes.stop()
    except Stop:
        pass
    except (BusUnavailable, EmbeddedServerError, ApiError, RuntimeError, TimeoutError) as exc:
        notices.print(f"[red]Error:[/] {escape(str(exc))}", highlight=False)
        exit_code = 1
    finally:
        lock.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    notices.print(f"Stopped. Data and logs are kept in {broker.data_dir}")
    raise typer.Exit(exit_code)


def _stop_left_embedded(stale: dict[str, Any], timeout: float = 10.0) -> None:
    """Stop the embedded Valkey that a killed ``up`` started and left running (SIGTERM: it
    writes its AOF and exits), so this ``up`` starts its own and stops it when done."""
    pid = stale.get("embeddedPid")
    if not isinstance(pid, int) or not alive(pid):
        return
    try:
        if b"valkey" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return  # the pid was reused by something else
        os.kill(pid, signal.SIGTERM)
    except (OSError, ProcessLookupError):
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    notices.print(f"Stopped the embedded Valkey (pid {pid}) it left running; its data is kept.")


def _say_already_running(exc: AlreadyRunning) -> None:
    state = exc.state
    where = state.get("url") or "(still starting)"
    notices.print(
        f"[yellow]vstudio up is already running[/] at {where} (pid {state.get('pid', '?')}, "
        f"data folder {exc.data_dir}).\n"
        "See it with 'vstudio status' and 'vstudio logs -f', stop it with 'vstudio down'.",
        highlight=False,
    )


@dataclass(frozen=True)
class UpOptions:
    """What ``_run`` needs of the command line."""

    host: str
    port: int
    targets: list[tuple[str, str]]
    chat_rate: float
    as_json: bool
    tls: bool
    lan: bool


def _run(
    processes: ChildProcesses,
    url: str,
    broker: BrokerSettings,
    options: UpOptions,
    lock: InstanceLock,
    show_logins: bool,
) -> None:
    """Start the server and the demo, then watch them until a signal or the server's death."""
    host = options.host
    chosen, moved = choose_port(host, options.port)
    if moved:
        notices.print(f"[yellow]Port {options.port} is taken; using {chosen}.[/]")
    serve_args = ["serve", "--host", host, "--port", str(chosen)]
    # in the environment, not argv: the URL may hold the embedded server's password (issue 13)
    redis_env = {"VSTUDIO_REDIS_URL": url}
    certfile: Path | None = None
    trust: ssl.SSLContext | None = None
    shown = host
    lan = lan_address() if options.lan else None
    if options.lan and lan is None:
        notices.print("[yellow]No LAN address found (is this machine on a network?).[/]")
    if options.tls:
        names = names_for(host) + ([lan] if lan else [])
        certfile, keyfile, made = self_signed_pair(broker.data_dir / "tls", names)
        if made:
            notices.print(f"Made a self-signed certificate: {certfile}")
        serve_args += ["--certfile", str(certfile), "--keyfile", str(keyfile)]
        trust = ssl.create_default_context(cafile=str(certfile))
        if host in ANY_ADDRESS:  # the certificate names no 0.0.0.0: show the LAN address
            shown = lan or names[-1]
    if host in ANY_ADDRESS and not options.tls:
        shown = "127.0.0.1"
    scheme = "https" if options.tls else "http"
    base_url = f"{scheme}://{shown}:{chosen}"
    # this command itself talks to the server on loopback when it listens everywhere
    local_url = f"{scheme}://127.0.0.1:{chosen}" if host in ANY_ADDRESS else base_url
    server = processes.start("server", vstudio_command(*serve_args), env=redis_env)
    wait_healthy(local_url, processes, trust=trust)
    if server.process.poll() is not None:
        raise RuntimeError(f"the server stopped at start: {why_stopped(server)}")
    logins = demo_logins(broker.data_dir)
    asyncio.run(ensure_accounts(url, logins))
    sources = demo_sources(options.targets, options.chat_rate)
    session = asyncio.run(ensure_demo_session(local_url, logins, trust, sources))
    # one fleet worker reads the demo's sources; its leases go when it stops (SIGTERM)
    processes.start("worker", vstudio_command("worker", "--json"), env=redis_env)
    sid = session["id"]
    state: dict[str, Any] = {
        "state": "ready",
        "url": base_url,
        "localUrl": local_url,
        "page": f"{base_url}/s/{sid}",
        "ws": ws_url(base_url),
        "overlays": overlay_urls(base_url, sid),
        "lanPage": f"{scheme}://{lan}:{chosen}/s/{sid}" if lan else None,
        "session": sid,
        "host": host,
        "port": chosen,
        "certfile": str(certfile) if certfile else None,
        "redisUrl": url,
        "redisShown": shown_redis(url),
        "fleet": broker.fleet,
        "sources": session["sourceIds"],
        "dataDir": str(broker.data_dir),
        "loginsFile": str(broker.data_dir / "demo-logins.json"),
        "users": list(DEMO_USERS),
        "logDir": str(processes.log_dir),
        "children": [
            {"name": c.name, "pid": c.process.pid, "log": str(c.log_path)}
            for c in processes.children
        ],
        "startedAt": int(time.time() * 1000),
    }
    lock.write(state | {"embeddedPid": lock.written.get("embeddedPid")})
    state["pid"] = os.getpid()
    show_ready(state, options.as_json, logins if show_logins else None)
    live = console.is_terminal and not options.as_json
    try:
        watch(processes, server, state, console=console, notices=notices, live=live)
    except Stop:
        notices.print("Stopping…")
        raise


def _forwarded_args(
    host: str,
    port: int,
    redis_url_flag: str | None,
    platforms: list[str],
    chat_rate: float,
    tls: bool,
    lan: bool,
) -> list[str]:
    """The command line of the background ``up`` that ``--detach`` starts."""
    args = ["--host", host, "--port", str(port), "--chat-rate", str(chat_rate)]
    if redis_url_flag:
        args += ["--redis-url", redis_url_flag]
    for value in platforms:
        args += ["--platform", value]
    if tls:
        args.append("--tls")
    if lan:
        args.append("--lan")
    return args


def _detach(
    args: list[str], data_dir: Path, as_json: bool, show_logins: bool, timeout: float = 90.0
) -> int:
    """Start ``up ARGS`` in the background, wait until it is ready, print its banner."""
    instance = find_instance(data_dir)
    if instance.running:
        _say_already_running(AlreadyRunning(data_dir, instance.state))
        return ExitCode.CONFLICT
    log_path = data_dir / "logs" / "up.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            vstudio_command("up", *args),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this terminal
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find_instance(data_dir)
        if found.state.get("state") == "ready" and found.state.get("pid") == process.pid:
            logins = demo_logins(data_dir) if show_logins else None
            show_ready(found.state, as_json, logins)
            if not as_json:
                notices.print(
                    f"Running in the background (pid {process.pid}); log: {log_path}\n"
                    "vstudio status · vstudio logs -f · vstudio down"
                )
            return ExitCode.OK
        if process.poll() is not None:
            lines = [readable(line) for line in tail(log_path, 8) if line.strip()]
            notices.print("[red]vstudio up did not start:[/]", highlight=False)
            notices.print("\n".join(lines), highlight=False, markup=False)
            return ExitCode.CONFLICT if process.returncode == ExitCode.CONFLICT else 1
        time.sleep(0.2)
    notices.print(f"[red]vstudio up is not ready after {timeout:.0f} s;[/] see {log_path}")
    return ExitCode.FAILED


def _parse_platforms(values: list[str]) -> list[tuple[str, str]]:
    targets = []
    for value in values:
        name, _, target = value.partition(":")
        if name != "twitch" or not target:
            raise typer.BadParameter(f"{value!r}: use twitch:CHANNEL", param_hint="--platform")
        targets.append((name, target))
    return targets
