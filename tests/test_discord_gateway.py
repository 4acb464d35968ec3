"""One Discord gateway connection for many channels: real discord.py against the local gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from broker import Bus
from config import IngestSettings
from ingest.base import AdapterFatal, IngestItem
from ingest.discord import DiscordGateway, GatewayPool
from ingest.runtime import Worker
from tests.support.platforms.discord import (
    BACKSTAGE_CHANNEL_ID,
    CHANNEL_ID,
    OTHER_CHANNEL_ID,
    THREAD_ID,
    FakeDiscord,
    snowflake,
)

T = 1_767_323_045_678
M = [snowflake(T, n) for n in range(10)]


async def until(check: Callable[[], bool], *tasks: asyncio.Task, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            for task in tasks:
                if task.done():
                    task.result()
                    raise AssertionError("an adapter stopped")
            await asyncio.sleep(0.02)


def gateway_for(fake: FakeDiscord, token: str | None = None) -> DiscordGateway:
    return DiscordGateway(
        token=token or fake.token,
        api_url=fake.api_url,
        gateway_url=fake.gateway_url,
        ready_timeout=0.1,
    )


def ids(items: list[IngestItem]) -> list[str]:
    return [getattr(i, "id", None) or getattr(i, "message_id", "") for i in items]


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_three_channels_share_one_connection_that_the_last_one_closes() -> None:
    channels = [int(CHANNEL_ID), int(OTHER_CHANNEL_ID), int(BACKSTAGE_CHANNEL_ID)]
    async with FakeDiscord().running() as fake:
        gateway = gateway_for(fake)
        adapters = [gateway.adapter(channel) for channel in channels]
        items: list[list[IngestItem]] = [[], [], []]
        tasks = [
            asyncio.create_task(adapter.run(got.append))
            for adapter, got in zip(adapters, items, strict=True)
        ]
        try:
            await until(lambda: all(a.status.state == "connected" for a in adapters), *tasks)
            assert len(fake.connections) == 1 and fake.identifies == 1
            assert gateway.clients_started == 1 and sorted(gateway.channels) == sorted(channels)
            assert [a.status.detail for a in adapters] == [
                "#live-chat as vstudio-bot",
                "#general as vstudio-bot",
                "#backstage as vstudio-bot",
            ]

            await fake.dispatch("MESSAGE_CREATE", fake.message(M[1], "live"))
            await fake.dispatch(
                "MESSAGE_CREATE", fake.message(M[2], "general", channel_id=OTHER_CHANNEL_ID)
            )
            await fake.dispatch(
                "MESSAGE_CREATE", fake.message(M[3], "backstage", channel_id=BACKSTAGE_CHANNEL_ID)
            )
            await fake.dispatch(
                "MESSAGE_CREATE", fake.message(M[4], "in a thread", channel_id=THREAD_ID)
            )
            await fake.dispatch("MESSAGE_DELETE", {"id": M[2], "channel_id": OTHER_CHANNEL_ID})
            await fake.dispatch(
                "MESSAGE_DELETE_BULK", {"ids": [M[3]], "channel_id": BACKSTAGE_CHANNEL_ID}
            )
            await fake.dispatch("MESSAGE_DELETE", {"id": M[4], "channel_id": THREAD_ID})
            await until(lambda: sum(map(len, items)) >= 7, *tasks)
            await asyncio.sleep(0.1)  # anything misrouted would arrive by now
            live, general, backstage = (ids(got) for got in items)
            assert live == [f"discord:{M[1]}", f"discord:{M[4]}", f"discord:{M[4]}"]
            assert general == [f"discord:{M[2]}", f"discord:{M[2]}"]
            assert backstage == [f"discord:{M[3]}", f"discord:{M[3]}"]

            # two leave: the connection stays for the third
            await stop(tasks[0])
            await stop(tasks[1])
            assert gateway.channels == [int(BACKSTAGE_CHANNEL_ID)]
            await fake.dispatch(
                "MESSAGE_CREATE", fake.message(M[5], "still here", channel_id=BACKSTAGE_CHANNEL_ID)
            )
            await fake.dispatch("MESSAGE_CREATE", fake.message(M[6], "nobody reads this"))
            await until(lambda: len(items[2]) == 3, tasks[2])
            assert not fake.connections[0].ws.closed and len(fake.connections) == 1

            # the last one leaves: the connection closes
            await stop(tasks[2])
            await until(lambda: fake.connections[0].ws.closed)
            assert gateway.channels == [] and gateway.user is None

            # and the next adapter to run opens a new one
            again: list[IngestItem] = []
            task = asyncio.create_task(gateway.adapter(int(CHANNEL_ID)).run(again.append))
            tasks.append(task)
            await until(lambda: fake.identifies == 2, task)
            assert gateway.clients_started == 2
        finally:
            for task in tasks:
                await stop(task)
    assert len(items[0]) == 3  # M6 came while no adapter read #live-chat


async def test_a_channel_the_bot_cannot_see_fails_alone() -> None:
    async with FakeDiscord().running() as fake:
        gateway = gateway_for(fake)
        seen, unseen = gateway.adapter(int(CHANNEL_ID)), gateway.adapter(999)
        items: list[IngestItem] = []
        reading = asyncio.create_task(seen.run(items.append))
        try:
            with pytest.raises(AdapterFatal, match="cannot see channel 999"):
                await asyncio.wait_for(unseen.run(lambda item: None), 10)
            await until(lambda: seen.status.state == "connected", reading)
            await fake.dispatch("MESSAGE_CREATE", fake.message(M[1], "hello"))
            await until(lambda: len(items) == 1, reading)
            assert fake.identifies == 1 and not fake.connections[0].ws.closed
        finally:
            await stop(reading)


async def test_a_refused_token_ends_every_channel_of_the_gateway() -> None:
    async with FakeDiscord().running() as fake:
        gateway = gateway_for(fake, token="WRONG")
        ends = await asyncio.wait_for(
            asyncio.gather(
                gateway.adapter(int(CHANNEL_ID)).run(lambda item: None),
                gateway.adapter(int(OTHER_CHANNEL_ID)).run(lambda item: None),
                return_exceptions=True,
            ),
            10,
        )
    assert all(
        isinstance(end, AdapterFatal) and "refused the bot token" in str(end) for end in ends
    )
    assert gateway.clients_started == 1


async def test_workers_on_one_pool_publish_each_channel_to_its_session(
    bus: Bus, session_id: str
) -> None:
    settings = IngestSettings(batch_interval_ms=5, heartbeat_ttl=5)
    sessions = {int(CHANNEL_ID): f"{session_id}a", int(BACKSTAGE_CHANNEL_ID): f"{session_id}b"}
    async with FakeDiscord().running() as fake:
        pool = GatewayPool(api_url=fake.api_url, gateway_url=fake.gateway_url)
        workers = [
            Worker(pool.adapter(fake.token, channel), bus, session, settings)
            for channel, session in sessions.items()
        ]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        try:
            await until(lambda: all(w.adapter.status.state == "connected" for w in workers), *tasks)
            await fake.dispatch("MESSAGE_CREATE", fake.message(M[1], "to live"))
            await fake.dispatch(
                "MESSAGE_CREATE",
                fake.message(M[2], "to backstage", channel_id=BACKSTAGE_CHANNEL_ID),
            )
            await until(lambda: all(w.stats.published == 1 for w in workers), *tasks)
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert len(pool.gateways) == 1 and fake.identifies == 1
    live, backstage = [(await bus.replay(s, "0-0")).events for s in sessions.values()]
    assert [e.payload["text"] for e in live] == ["to live"]
    assert [e.payload["text"] for e in backstage] == ["to backstage"]
