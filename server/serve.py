"""Running the server: one process, or N processes sharing a port with ``SO_REUSEPORT``.

All state is in Redis, so workers share nothing but the listening port; the kernel spreads
connections over them. With a certificate (``certfile``/``keyfile``) every process serves HTTPS
and WSS on that port itself. The parent starts the embedded Valkey (when no Redis URL is given) and
resolves the JWT secret once, and hands both to every worker. SIGTERM or SIGINT drains: the
workers close their clients with 1012 and exit; the parent waits for them and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import multiprocessing
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from broker.embedded import any_free_port, port_is_free
from broker.runtime import redis_url as resolve_redis_url
from config import BrokerSettings, ServerSettings
from config.logging import configure_logging
from server.guard import PendingConnections
from server.identity.auth import WeakSecret, resolve_jwt_secret

if TYPE_CHECKING:  # ForkContext is not there on Windows
    from multiprocessing.context import ForkContext, SpawnContext

__all__ = [
    "PortTaken",
    "TlsError",
    "bind_socket",
    "find_free_port",
    "run",
    "serve",
    "tls_context",
    "worker_context",
]

log = logging.getLogger("vstudio.server.serve")

LISTEN_BACKLOG = 4096
"""Connections the kernel queues before accept. After a crash or deploy every client comes back
within a few seconds; aiohttp's default of 128 made the kernel drop SYNs, and each dropped
client waited 1-3 s more to retry. The kernel caps it at ``net.core.somaxconn``."""


class PortTaken(RuntimeError):
    """The port is in use by another program; the message says what to do."""


class TlsError(RuntimeError):
    """The certificate or key cannot be used; the message says which and why."""


def tls_context(settings: ServerSettings) -> ssl.SSLContext | None:
    """The server's TLS context from ``certfile``/``keyfile``; ``None`` serves plain HTTP.

    ``keyfile`` may be left out when the key is in ``certfile``. Built in each process (an
    ``SSLContext`` cannot be pickled for a worker), and once before starting so a bad file is
    reported at once instead of by every worker.
    """
    if settings.certfile is None:
        if settings.keyfile is not None:
            raise TlsError("--keyfile (VSTUDIO_KEYFILE) needs --certfile (VSTUDIO_CERTFILE) too")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.certfile, settings.keyfile)
    except ssl.SSLError as exc:
        raise TlsError(
            f"cannot use certfile {settings.certfile} with keyfile {settings.keyfile}: "
            f"{exc.reason or exc} (both PEM, the key matching the certificate)"
        ) from exc
    except OSError as exc:
        raise TlsError(f"cannot read {exc.filename or settings.certfile}: {exc.strerror}") from exc
    return context


def find_free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """``preferred`` if nobody uses it, else a free port the kernel picks (for ``vstudio up``)."""
    if preferred and port_is_free(host, preferred):
        return preferred
    return any_free_port(host)


def _check_free(host: str, port: int) -> None:
    """Bind without ``SO_REUSEPORT``: fails if anything (even another of us) holds the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(
                    f"port {port} on {host} is already in use. Stop what runs there or choose "
                    "another port with --port (or VSTUDIO_PORT); --port 0 picks a free one."
                ) from exc
            raise PortTaken(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other workers can bind too (``SO_REUSEPORT``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def worker_context() -> ForkContext | SpawnContext:
    """How workers start: ``fork`` on Linux while this process runs one thread, else ``spawn``.

    A forked worker starts with the parent's modules already imported (the parent imports the
    app first), so a restart after a crash or a deploy serves about a second sooner and the
    workers share those pages; a spawned one imports everything again. Forking is unsafe in a
    process with other threads (a lock one of them holds stays held in the child) and on macOS.
    """
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker process needs (picklable for ``spawn``)."""

    settings: ServerSettings
    broker: BrokerSettings
    redis_url: str
    jwt_secret: str
    port: int
    log_json: bool
    log_level: str


SLOW_SHUTDOWN_SECONDS = 12.0
"""When a shutdown that has not finished names what it waits on (drain is 10 s at most)."""


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _serve_until_stopped(
    plan: WorkerPlan, sock: socket.socket, on_ready: Callable[[], None]
) -> None:
    from server.app import build_app
    from server.front import FRONT_DOOR

    settings = plan.settings
    app = build_app(settings, plan.broker, plan.redis_url, plan.jwt_secret)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=15.0,
        # bounds the wait for every request head after the first (see server/guard.py)
        keepalive_timeout=settings.header_timeout,
    )
    await runner.setup()
    assert runner.server is not None
    # in place of web.SockSite: the same listener, each connection's protocol guarded
    guard = PendingConnections(
        settings.max_pending_connections_per_address, settings.header_timeout
    )
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        guard.wrap(runner.server, app[FRONT_DOOR]),
        sock=sock,
        ssl=tls_context(settings),
        backlog=LISTEN_BACKLOG,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    on_ready()
    await stop.wait()
    log.info("draining: closing every client with 1012")
    listener.close()
    watchdog = loop.create_task(_report_slow_shutdown(SLOW_SHUTDOWN_SECONDS))
    try:
        await runner.cleanup()
    finally:
        watchdog.cancel()


async def _report_slow_shutdown(after: float) -> None:
    """Name what a shutdown still waits on after ``after`` seconds: a supervisor kills a
    process that takes too long, and without this its log would not say why."""
    await asyncio.sleep(after)
    me = asyncio.current_task()
    waiting = []
    for task in asyncio.all_tasks():
        if task is me:
            continue
        frames = task.get_stack(limit=1)
        where = f"{frames[-1].f_code.co_filename}:{frames[-1].f_lineno}" if frames else "?"
        waiting.append(f"{task.get_name()} at {where}")
    log.warning("shutdown still running after %.0f s: %s", after, "; ".join(sorted(waiting)))


def _worker_main(
    plan: WorkerPlan,
    ready: multiprocessing.synchronize.Event | None,
    sock: socket.socket | None = None,
) -> None:
    """Entry point of one worker process (``sock``: its listener, made by the parent)."""
    # a forked worker inherits the parent's handlers, which forward the signal to the workers
    # and wait: the worker would ignore a SIGTERM until its own loop took the signals over
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    configure_logging(json_lines=plan.log_json, level=plan.log_level)
    if sock is None:
        sock = bind_socket(plan.settings.host, plan.port)
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(_serve_until_stopped(plan, sock, ready.set if ready else lambda: None))


def run(
    settings: ServerSettings,
    broker: BrokerSettings,
    *,
    log_json: bool = False,
    log_level: str = "INFO",
    announce: Callable[[str], None] = print,
) -> int:
    """Serve until SIGTERM/SIGINT; the exit code. Raises :class:`PortTaken` or
    :class:`WeakSecret` before starting."""
    jwt_secret = resolve_jwt_secret(settings, broker)
    host, port = settings.host, settings.port
    scheme = "https" if tls_context(settings) else "http"
    if port:
        _check_free(host, port)
    # holds the port (and picks one for --port 0), and queues the clients that come while the
    # rest starts; it is the (first) worker's listener
    listener = bind_socket(host, port)
    port = int(listener.getsockname()[1])
    with resolve_redis_url(broker) as url:
        plan = WorkerPlan(settings, broker, url, jwt_secret, port, log_json, log_level)
        base = settings.public_url or f"{scheme}://{host}:{port}"
        if settings.workers == 1:
            ready = lambda: announce(f"vstudio serve: listening on {base} (1 process)")  # noqa: E731
            with asyncio.Runner(loop_factory=_new_loop) as runner:
                runner.run(_serve_until_stopped(plan, listener, ready))
            return 0
        return _run_workers(plan, listener, base, announce)


def _run_workers(
    plan: WorkerPlan, first: socket.socket, base: str, announce: Callable[[str], None]
) -> int:
    """Start ``plan.settings.workers`` processes, ``first`` the first one's listener; wait for
    them all to exit."""
    context = worker_context()
    if context.get_start_method() == "fork":
        import server.app  # noqa: F401  # loaded once here, every forked worker starts with it
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive() and worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)

    previous = {
        signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    workers: list[multiprocessing.process.BaseProcess] = []
    readies = []
    try:
        for n in range(plan.settings.workers):
            # made before its worker starts, so a client that comes meanwhile is queued
            sock = first if n == 0 else bind_socket(plan.settings.host, plan.port)
            ready = context.Event()
            process = context.Process(target=_worker_main, args=(plan, ready, sock), daemon=False)
            process.start()
            # only the worker holds it now: its queue goes when it dies, and no worker forked
            # after it inherits it
            sock.close()
            workers.append(process)
            readies.append(ready)
        for ready, worker in zip(readies, workers, strict=True):
            while not ready.wait(0.2):
                if not worker.is_alive():
                    forward(signal.SIGTERM, None)
                    break
        if all(worker.is_alive() for worker in workers):
            announce(f"vstudio serve: listening on {base} ({len(workers)} processes)")
        for worker in workers:
            worker.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    failed = [worker.exitcode for worker in workers if worker.exitcode not in (0, None)]
    if failed and not stopping:
        return 1
    return 0


def serve(
    settings: ServerSettings,
    broker: BrokerSettings,
    *,
    log_json: bool = False,
    log_level: str = "INFO",
    announce: Callable[[str], None] = print,
) -> int:
    """:func:`run` with :class:`PortTaken`, :class:`WeakSecret` or :class:`TlsError` as a
    message and exit code 2."""
    try:
        return run(settings, broker, log_json=log_json, log_level=log_level, announce=announce)
    except (PortTaken, WeakSecret, TlsError) as exc:
        print(f"vstudio serve: {exc}", file=sys.stderr)
        return 2
