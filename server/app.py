"""The aiohttp application of one server process: routes, startup and the drain on shutdown.

Startup connects to Redis, builds the process's :class:`~server.core.Core` and starts the
fan-out hub and the interaction modules' background work. Shutdown closes every client with
1012 (reconnect) before anything else stops, so no acknowledged action is cut off halfway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web

import server.http.pages
import server.http.reads
import server.interactions.session_actions
from broker.bus import Bus
from broker.connection import connect
from config import BrokerSettings, ServerSettings
from server.context import ServerContext
from server.core import CORE, Core
from server.fanout.hub import Hub
from server.gcpolicy import keep_collections_short
from server.http import sessions as sessions_api
from server.http.actions import add_routes
from server.http.errors import error_middleware, json_response
from server.http.openapi import openapi_document
from server.identity import api as auth_api
from server.identity.accounts import AccountStore
from server.identity.auth import TokenVerifier
from server.identity.tickets import TicketStore
from server.interactions.sessions import SessionStore
from server.metrics import Metrics
from server.presence import REFRESH_EVERY, Presence
from server.ratelimit import RedisWindow
from server.transport import sse, ws

__all__ = ["build_app"]

log = logging.getLogger("vstudio.server")
routes = web.RouteTableDef()

REDIS_POOL = 64
"""Redis connections per process; more callers wait (up to :data:`REDIS_WAIT` seconds)."""
REDIS_WAIT = 10.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    core = request.app[CORE]
    return json_response({"ok": True, "process": core.ctx.process_id, "pid": os.getpid()})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Redis answers (and the process is not draining)."""
    core = request.app[CORE]
    if core.draining:
        return json_response({"ok": False, "reason": "draining"}, status=503)
    try:
        async with asyncio.timeout(2.0):
            await core.ctx.bus.redis.ping()
    except Exception as exc:
        return json_response({"ok": False, "reason": f"redis: {exc}"}, status=503)
    return json_response({"ok": True})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text of this process's registry."""
    body = request.app[CORE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


async def _connect_pool(url: str, broker: BrokerSettings) -> aioredis.Redis:
    """A client whose pool waits for a free connection instead of failing under load.

    redis-py's default pool raises once 100 connections are busy, which a burst of thousands
    of connects reaches; a blocking pool of :data:`REDIS_POOL` queues the callers instead.
    """
    probe = await connect(url, attempts=broker.connect_attempts, timeout=broker.connect_timeout)
    await probe.aclose()
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_POOL,
        timeout=REDIS_WAIT,
        socket_connect_timeout=broker.connect_timeout,
        health_check_interval=15,
    )
    return aioredis.Redis(connection_pool=pool)


async def _presence_refresher(core: Core) -> None:
    while True:
        await asyncio.sleep(REFRESH_EVERY)
        try:
            await core.presence.refresh()
        except Exception:
            log.exception("presence refresh failed")


def build_app(
    settings: ServerSettings, broker: BrokerSettings, redis_url: str, jwt_secret: str
) -> web.Application:
    """The application; connects to Redis when it starts."""
    app = web.Application(middlewares=[error_middleware], client_max_size=1024 * 1024)
    app["max_body"] = settings.max_message_bytes
    app.add_routes(routes)
    app.add_routes(auth_api.routes)
    app.add_routes(sessions_api.routes)
    add_routes(app)
    app.add_routes(ws.routes)
    app.add_routes(sse.routes)
    app.add_routes(server.http.reads.routes)
    app.add_routes(server.http.pages.routes)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        client = await _connect_pool(redis_url, broker)
        bus = Bus(client, history_size=broker.history_size, dedupe_ttl=broker.dedupe_ttl)
        process_id = f"{os.getpid()}-{secrets.token_hex(3)}"
        store = SessionStore(bus)
        ctx = ServerContext(
            settings=settings, broker=broker, bus=bus, sessions=store, process_id=process_id
        )
        metrics_ = Metrics(process_id)
        core = Core(
            ctx=ctx,
            store=store,
            accounts=AccountStore(client),
            tickets=TicketStore(client, settings.ticket_ttl),
            verifier=TokenVerifier(settings, jwt_secret),
            presence=Presence(client, process_id, settings.max_viewers),
            hub=None,  # type: ignore[arg-type]
            metrics=metrics_,
            windows=RedisWindow(client),
        )
        core.hub = Hub(bus, settings, metrics_, core.session_state)
        app[CORE] = core
        await core.hub.start()
        await server.http.reads.start(ctx)
        loop = asyncio.get_running_loop()
        background = [loop.create_task(_presence_refresher(core))]
        if settings.gc_freeze:
            background.append(loop.create_task(keep_collections_short(core.hub)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                await server.http.reads.stop(ctx)
            await core.settle()
            await core.hub.stop()
            with contextlib.suppress(Exception):
                await core.presence.clear()
            await client.aclose()

    async def drain(app: web.Application) -> None:
        core = app.get(CORE)
        if core is not None:
            await core.drain()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(drain)
    return app
