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

import pytest

from broker import Bus, SessionFeed, connect, keys
from broker.bus import parse_stream_id
from broker.connection import TRANSIENT_ERRORS, is_cluster
from broker.feed import FeedItem, Resumed
from tests.support.cluster import LocalCluster

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


async def test_the_feed_loses_and_repeats_nothing_across_a_failover(
    redis_cluster: LocalCluster, cluster_bus: Bus, session_id: str
) -> None:
    feed = SessionFeed(cluster_bus, initial_backoff=0.05, max_backoff=0.5)
    seen: list[FeedItem] = []
    published: list[str] = []

    async def consume() -> None:
        async for item in feed:
            seen.append(item)

    async def publish(count: int) -> None:
        for n in range(count):
            while True:
                try:
                    event_id = await cluster_bus.publish(session_id, "events", "tick", {"n": n})
                    break
                except TRANSIENT_ERRORS:  # the slot is between owners; try again
                    await asyncio.sleep(0.02)
            assert event_id is not None
            published.append(event_id)
            await asyncio.sleep(0.005)

    consumer = asyncio.create_task(consume())
    try:
        await feed.follow(session_id, "0-0")
        during = asyncio.create_task(publish(150))
        await asyncio.sleep(0.2)
        owner = redis_cluster.owner_of(keys.stream(session_id))
        await asyncio.to_thread(redis_cluster.failover, redis_cluster.replica_of(owner))
        await during
        assert redis_cluster.owner_of(keys.stream(session_id)) != owner
        await publish(50)  # on the new owner only
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
    assert feed.reconnects >= 1, "the feed never noticed that the slot moved"
    resumed = [item for item in seen if isinstance(item, Resumed)]
    assert resumed and all(item.complete for item in resumed)
    # the newest event was not replayed: it came live, over the subscription on the new owner
    newest_replayed = parse_stream_id(resumed[-1].last_id or resumed[-1].after_id)
    assert newest_replayed < parse_stream_id(published[-1])
