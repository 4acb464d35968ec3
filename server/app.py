"""The aiohttp application of one server process: routes, startup and the drain on shutdown.

This is where the server is put together, in plain sight: the route tables of every package,
and at startup the one :class:`~server.context.ServerContext` (Redis, stores, the interaction
services and their table of client messages, the fan-out hub), built complete. Shutdown closes
every client with 1012 (reconnect) before anything else stops, so no acknowledged action is
cut off halfway.
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

from broker.bus import Bus
from broker.connection import connect
from broker.tasks import stop_task
from config import BrokerSettings, ServerSettings
from server.attendance import Attendance
from server.bridge import SeedBridge
from server.context import CONTEXT, ServerContext
from server.fanout.hub import Hub
from server.front import FRONT_DOOR, FrontDoor
from server.gcpolicy import keep_collections_short
from server.http import actions, announcements, auth, health, pages, reads, sessions, wallet
from server.http import sources as http_sources
from server.http.errors import BODY_TIMEOUT, MAX_BODY, error_middleware
from server.identity.accounts import AccountStore
from server.identity.auth import Revocations, TokenVerifier
from server.identity.tickets import TicketStore
from server.identity.wallet import WalletStore
from server.interactions.catalog import ACTIONS, STATE_PARTS, build_services
from server.interactions.registry import ActionTable
from server.interactions.sessions import SessionStore
from server.interactions.state import SessionState
from server.metrics import Metrics
from server.presence import REFRESH_EVERY, ConnectionQuota, Presence
from server.ratelimit import RedisWindow
from server.tokengate.gate import TokenGate
from server.tokengate.rpc import EthRpc
from server.transport import sse, ws

__all__ = ["build_app"]

log = logging.getLogger("vstudio.server.app")

REDIS_POOL = 64
"""Redis connections per process; more callers wait (see ``broker.connection.POOL_WAIT``)."""


async def _connect_pool(url: str, broker: BrokerSettings) -> aioredis.Redis:
    """A client whose pool waits for a free connection instead of failing under load.

    redis-py's default pool raises once 100 connections are busy, which a burst of thousands
    of connects reaches; a blocking pool of :data:`REDIS_POOL` queues the callers instead.
    """
    return await connect(
        url,
        attempts=broker.connect_attempts,
        timeout=broker.connect_timeout,
        max_connections=REDIS_POOL,
    )


async def _presence_refresher(presence: Presence, quota: ConnectionQuota) -> None:
    while True:
        await asyncio.sleep(REFRESH_EVERY)
        try:
            await presence.refresh()
            await quota.refresh(spread=REFRESH_EVERY / 2)
        except Exception:
            log.exception("presence refresh failed")


def build_context(
    client: aioredis.Redis,
    settings: ServerSettings,
    broker: BrokerSettings,
    jwt_secret: str,
) -> ServerContext:
    """Every part of one process, each given what it uses."""
    bus = Bus(
        client,
        history_size=broker.history_size,
        dedupe_ttl=broker.dedupe_ttl,
        dedupe_cap=broker.dedupe_cap,
        resubscribe_max_backoff=broker.resubscribe_max_backoff,
    )
    process_id = f"{os.getpid()}-{secrets.token_hex(3)}"
    metrics = Metrics(process_id)
    store = SessionStore(bus)
    presence = Presence(client, process_id, settings.max_viewers)
    quota = ConnectionQuota(
        client,
        process_id,
        settings.max_connections_per_user,
        settings.max_connections_per_address,
    )
    services = build_services(settings, bus, store)
    hub = Hub(bus, settings, metrics, SessionState(services, STATE_PARTS, presence.count))
    return ServerContext(
        settings=settings,
        broker=broker,
        process_id=process_id,
        bus=bus,
        sessions=store,
        accounts=AccountStore(client),
        tickets=TicketStore(client, settings.ticket_ttl),
        verifier=TokenVerifier(settings, jwt_secret, Revocations(client)),
        presence=presence,
        quota=quota,
        windows=RedisWindow(client),
        metrics=metrics,
        services=services,
        actions=ActionTable(ACTIONS),
        hub=hub,
        attendance=Attendance(bus, presence, hub, metrics, quota),
        wallets=WalletStore(client, settings.siwe_nonce_ttl),
        gate=TokenGate(
            client,
            EthRpc(settings.eth_rpc_endpoints(), settings.eth_rpc_timeout),
            default_chain=settings.eth_chain_id,
            balance_ttl=settings.token_balance_ttl,
        ),
    )


def build_app(
    settings: ServerSettings, broker: BrokerSettings, redis_url: str, jwt_secret: str
) -> web.Application:
    """The application; connects to Redis when it starts."""
    app = web.Application(middlewares=[error_middleware], client_max_size=1024 * 1024)
    app[MAX_BODY] = settings.max_message_bytes
    app[BODY_TIMEOUT] = settings.body_timeout
    app.add_routes(health.routes)
    app.add_routes(auth.routes)
    app.add_routes(wallet.routes)
    app.add_routes(sessions.routes)
    app.add_routes(announcements.routes)
    app.add_routes(actions.routes())
    app.add_routes(reads.routes)
    app.add_routes(ws.routes)
    app.add_routes(sse.routes)
    app.add_routes(pages.routes)
    # issue 15: a session's chat sources, read by the worker fleet
    app.add_routes(http_sources.routes)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        client = await _connect_pool(redis_url, broker)
        ctx = build_context(client, settings, broker, jwt_secret)
        app[CONTEXT] = ctx
        await ctx.hub.start()
        bridge = SeedBridge(ctx.bus, ctx.sessions, ctx.hub)
        await bridge.start()
        ctx.services.start()
        loop = asyncio.get_running_loop()
        background = [loop.create_task(_presence_refresher(ctx.presence, ctx.quota))]
        if settings.gc_freeze:
            background.append(loop.create_task(keep_collections_short(ctx.hub)))
        try:
            yield
        finally:
            for task in background:
                await stop_task(task)
            with contextlib.suppress(Exception):
                await ctx.services.stop()
            await bridge.stop()
            await ctx.attendance.settle()
            await ctx.hub.stop()
            await ctx.gate.rpc.close()
            with contextlib.suppress(Exception):
                await ctx.presence.clear()
            with contextlib.suppress(Exception):
                await ctx.quota.clear()
            await client.aclose()

    async def drain(app: web.Application) -> None:
        ctx = app.get(CONTEXT)
        if ctx is not None:
            await ctx.attendance.drain()

    front = FrontDoor(app)  # the guard gives it the upgrades and tickets that come first
    app[FRONT_DOOR] = front
    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(drain)
    app.on_shutdown.append(front.close)  # after the drain: what is left is still closing
    return app
