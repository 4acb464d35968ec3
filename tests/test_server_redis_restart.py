"""A server whose Redis restarts keeps its clients and loses no event (AOF on, same port)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from broker import Bus, connect
from tests.support.loopback import free_port
from tests.support.redis import start_private_redis
from tests.support.types import ServerFactory
from tests.support.websocket import receive_type

pytestmark = pytest.mark.slow


async def test_clients_get_events_published_before_the_subscription_is_back(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    port = free_port()
    redis = start_private_redis(tmp_path / "redis", port)
    url = f"redis://127.0.0.1:{port}"
    try:
        server = server_factory(VSTUDIO_REDIS_URL=url)
        session = await server.live_session()
        sid = session["id"]
        async with server.ws(sid, "stays") as ws:
            await receive_type(ws, "session.state")
            client = await connect(url)
            before = await Bus(client).publish(sid, "events", "tip.received", {"n": 0})
            await client.aclose()
            assert (await receive_type(ws, "tip.received"))["id"] == before
            redis.stop()
            await asyncio.sleep(1.0)  # the server's subscription notices the drop
            redis = start_private_redis(tmp_path / "redis", port)
            client = await connect(url, attempts=20)
            try:
                ids = [
                    await Bus(client).publish(sid, "events", "tip.received", {"n": n})
                    for n in range(1, 4)
                ]
            finally:
                await client.aclose()
            got = [(await receive_type(ws, "tip.received", timeout=15))["id"] for _ in ids]
            assert got == ids  # in order, none lost, none repeated
            await ws.send_json({"type": "ping", "requestId": "after"})
            pong = await receive_type(ws, "pong")
            assert pong["requestId"] == "after"
    finally:
        redis.stop()
