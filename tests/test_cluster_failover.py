"""A session feed on a Redis Cluster keeps its promise through a primary failover.

``CLUSTER FAILOVER`` on the replica of the primary that owns the session's slot moves the slot
(and with it the sharded channel) to another node while events keep being published. The feed
must subscribe again on the new owner and replay from its last id: every event of the
session's stream delivered once, in order, and the ones published after the failover live.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker import Bus, SessionFeed, connect, keys
from broker.bus import parse_stream_id
from broker.connection import TRANSIENT_ERRORS, is_cluster
from broker.feed import FeedItem, Resumed
from tests.support.cluster import LocalCluster
from tests.support.live_server import live_servers

pytestmark = pytest.mark.cluster


@pytest.fixture
async def cluster_bus(redis_cluster: LocalCluster) -> AsyncIterator[Bus]:
    client = await connect(redis_cluster.url)
    try:
        yield Bus(client, history_size=10_000)
    finally:
        await client.aclose()


async def test_a_cluster_url_gets_a_cluster_client(cluster_bus: Bus) -> None:
    assert is_cluster(cluster_bus.redis)
    nodes = await cluster_bus.redis.cluster_nodes()
    assert sum("master" in node["flags"] for node in nodes.values()) == 3


async def publish_through(bus: Bus, session_id: str, count: int, published: list[str]) -> None:
    """Publish ``count`` events a few milliseconds apart, retrying while the slot moves."""
    for n in range(count):
        while True:
            try:
                event_id = await bus.publish(session_id, "events", "tip.received", {"n": n})
                break
            except TRANSIENT_ERRORS:  # the slot is between owners; try again
                await asyncio.sleep(0.02)
        assert event_id is not None
        published.append(event_id)
        await asyncio.sleep(0.005)


async def fail_over_the_owner_of(cluster: LocalCluster, session_id: str) -> int:
    """``CLUSTER FAILOVER`` on the replica of the session's primary; the old primary's port."""
    owner = cluster.owner_of(keys.stream(session_id))
    await asyncio.to_thread(cluster.failover, cluster.replica_of(owner))
    assert cluster.owner_of(keys.stream(session_id)) != owner
    return owner


async def test_the_feed_loses_and_repeats_nothing_across_a_failover(
    redis_cluster: LocalCluster, cluster_bus: Bus, session_id: str
) -> None:
    feed = SessionFeed(cluster_bus, initial_backoff=0.05, max_backoff=0.5)
    seen: list[FeedItem] = []
    published: list[str] = []

    async def consume() -> None:
        async for item in feed:
            seen.append(item)

    consumer = asyncio.create_task(consume())
    try:
        await feed.follow(session_id, "0-0")
        during = asyncio.create_task(publish_through(cluster_bus, session_id, 150, published))
        await asyncio.sleep(0.2)
        await fail_over_the_owner_of(redis_cluster, session_id)
        await during
        # on a loaded machine the feed may notice the move only after every event above was
        # published; the last ones can come live only once it has subscribed on the new owner
        for _ in range(500):
            if feed.reconnects:
                break
            await asyncio.sleep(0.02)
        assert feed.reconnects >= 1, "the feed never noticed that the slot moved"
        await publish_through(cluster_bus, session_id, 50, published)  # on the new owner only
        async with asyncio.timeout(10):
            while published[-1] not in {getattr(item, "id", None) for item in seen}:
                await asyncio.sleep(0.02)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await feed.close()

    delivered = [item.id for item in seen if not isinstance(item, Resumed)]
    entries = await cluster_bus.redis.xrange(keys.stream(session_id))
    assert delivered == [entry_id.decode() for entry_id, _ in entries]  # once each, in order
    assert set(published) <= set(delivered)
    resumed = [item for item in seen if isinstance(item, Resumed)]
    assert resumed and all(item.complete for item in resumed)
    # the newest event was not replayed: it came live, over the subscription on the new owner
    newest_replayed = parse_stream_id(resumed[-1].last_id or resumed[-1].after_id)
    assert newest_replayed < parse_stream_id(published[-1])


async def test_websocket_clients_get_every_event_once_across_a_failover(
    redis_cluster: LocalCluster, cluster_bus: Bus, tmp_path: Path
) -> None:
    """The same promise end to end: a server on the cluster, a fan on a WebSocket."""
    with live_servers(redis_cluster.url, tmp_path) as start:
        server = start()
        sid = (await server.live_session())["id"]
        published: list[str] = []
        got: list[dict[str, Any]] = []
        async with server.ws(sid, "fan") as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "session.state"
            during = asyncio.create_task(publish_through(cluster_bus, sid, 120, published))
            await asyncio.sleep(0.2)
            await fail_over_the_owner_of(redis_cluster, sid)
            await during
            await publish_through(cluster_bus, sid, 30, published)
            async with asyncio.timeout(15):
                while not got or got[-1]["id"] != published[-1]:
                    frame = await ws.receive_json()
                    if frame["type"] == "tip.received":
                        got.append(frame)
    entries = await cluster_bus.redis.xrange(keys.stream(sid))
    tips = [entry_id.decode() for entry_id, fields in entries if b"tip.received" in fields[b"e"]]
    assert [frame["id"] for frame in got] == tips  # every one, once, in order
    assert set(published) <= set(tips)
