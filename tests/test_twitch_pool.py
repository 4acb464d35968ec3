"""Many Twitch channels over one IRC connection (issue 15): the pool's adapters run in the
real worker runtime against the local Twitch server and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from broker import Bus
from config import IngestSettings
from ingest.base import IngestItem
from ingest.runtime import Worker
from ingest.twitch import ChannelNotFound, TwitchReconnect
from ingest.twitch_pool import JoinPacer, TwitchPool
from tests.support.platforms.twitch_irc import TwitchIrcServer, privmsg
from tests.test_ingest_twitch import fast_settings, until, wait_for_events


def pool_settings(url: str, **extra: object) -> IngestSettings:
    values: dict[str, object] = {"twitch_join_limit": 1000, "twitch_join_window_seconds": 1.0}
    values.update(extra)
    return fast_settings(url, **values)


@pytest.fixture
async def server() -> AsyncIterator[TwitchIrcServer]:
    async with TwitchIrcServer() as running:
        yield running


async def collect(pool: TwitchPool, channel: str) -> tuple[asyncio.Task[None], list[IngestItem]]:
    """Run ``channel``'s adapter outside a worker: its task and what it emitted."""
    items: list[IngestItem] = []
    task = asyncio.create_task(pool.adapter(channel).run(items.append))
    return task, items


async def settle(task: asyncio.Task[None]) -> BaseException | None:
    with pytest.raises(BaseException) as caught:
        await asyncio.wait_for(task, 10)
    return caught.value


def test_pacer_allows_limit_per_window_and_no_more() -> None:
    pacer = JoinPacer(limit=3, window=10.0)
    for now in (0.0, 1.0, 2.0):
        assert pacer.delay(now) == 0.0
        pacer.record(now)
    assert pacer.delay(5.0) == 5.0  # the first JOIN leaves the window at 10
    assert pacer.delay(10.0) == 0.0
    pacer.record(10.0)
    assert pacer.delay(10.5) == 0.5  # the second (at 1) leaves at 11


async def test_fifty_channels_share_one_connection_and_reach_only_their_session(
    bus: Bus, server: TwitchIrcServer
) -> None:
    settings = pool_settings(server.url)
    pool = TwitchPool(settings)
    channels = [f"chan{n:02d}" for n in range(50)]
    sessions = {channel: f"{channel}x{id(pool)}" for channel in channels}
    workers = [Worker(pool.adapter(ch), bus, sessions[ch], settings) for ch in channels]
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        await until(lambda: server.joined() == set(channels))
        await until(lambda: all(w.adapter.status.state == "connected" for w in workers))
        for n, channel in enumerate(channels):
            assert await server.say(channel, privmsg(f"p-{n}", f"hi {channel}", channel=channel))
        for channel in channels:
            await wait_for_events(bus, sessions[channel], 1)
        await asyncio.sleep(0.1)  # anything misrouted would have arrived by now
        per_session = [(await bus.replay(sessions[ch], "0-0")).events for ch in channels]
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)
        await pool.aclose()
    assert [[e.payload["id"] for e in events] for events in per_session] == [
        [f"twitch:p-{n}"] for n in range(50)
    ]
    assert server.connections == 1 and pool.opened == 1
    assert len(server.joins) == 50
    assert "connection 0" in workers[0].adapter.status.detail


async def test_joins_are_paced_by_the_limit(server: TwitchIrcServer) -> None:
    pool = TwitchPool(pool_settings(server.url, twitch_join_limit=5))
    runs = [await collect(pool, f"paced{n}") for n in range(20)]
    try:
        await until(lambda: len(server.joins) == 20)
    finally:
        await pool.aclose()
        await asyncio.gather(*(task for task, _ in runs), return_exceptions=True)
    times = [at for at, _ in server.joins]
    assert times[-1] - times[0] >= 2.9  # 5 at once, then 5 per second
    assert max(sum(1 for t in times if start <= t < start + 0.95) for start in times) <= 5
    assert [channel for _, channel in server.joins] == [f"paced{n}" for n in range(20)]


async def test_channels_per_connection_opens_more_connections(server: TwitchIrcServer) -> None:
    pool = TwitchPool(pool_settings(server.url, twitch_channels_per_connection=2))
    runs = [await collect(pool, f"capped{n}") for n in range(5)]
    try:
        await until(lambda: len(server.joined()) == 5)
        assert server.connections == 3
        assert sorted(len(conn.joined) for conn in server.open.values()) == [1, 2, 2]
    finally:
        await pool.aclose()
        await asyncio.gather(*(task for task, _ in runs), return_exceptions=True)


@pytest.mark.parametrize("how", ["drop", "reconnect"])
async def test_every_channel_joins_again_after_a_drop(
    bus: Bus, server: TwitchIrcServer, how: str
) -> None:
    settings = pool_settings(server.url)
    pool = TwitchPool(settings)
    channels = [f"again{n}" for n in range(5)]
    session = f"again{id(pool)}{how}"
    workers = [Worker(pool.adapter(ch), bus, session, settings) for ch in channels]
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        await until(lambda: server.joined() == set(channels))
        if how == "drop":
            server.drop_all()
        else:
            await server.broadcast(":tmi.twitch.tv RECONNECT")
        await until(lambda: server.connections == 2 and server.joined() == set(channels))
        for n, channel in enumerate(channels):
            await server.say(channel, privmsg(f"{how}-{n}", "after", channel=channel))
        events = await wait_for_events(bus, session, 5)
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)
        await pool.aclose()
    assert sorted(e.payload["id"] for e in events) == [f"twitch:{how}-{n}" for n in range(5)]
    assert all(worker.stats.reconnects == 1 for worker in workers)
    assert sorted(channel for _, channel in server.joins) == sorted(channels * 2)
    assert pool.opened == 2


async def test_reconnect_raises_in_every_channel(server: TwitchIrcServer) -> None:
    pool = TwitchPool(pool_settings(server.url))
    runs = [await collect(pool, name) for name in ("one", "two")]
    await until(lambda: server.joined() == {"one", "two"})
    await server.broadcast(":tmi.twitch.tv RECONNECT")
    errors = [await settle(task) for task, _ in runs]
    await pool.aclose()
    assert all(isinstance(error, TwitchReconnect) for error in errors)
    assert errors[0] is not errors[1]


async def test_cancel_parts_the_channel_and_the_last_one_closes(server: TwitchIrcServer) -> None:
    pool = TwitchPool(pool_settings(server.url))
    (stay, stay_items), (leave, leave_items) = [await collect(pool, n) for n in ("stay", "leave")]
    try:
        await until(lambda: server.joined() == {"stay", "leave"})
        leave.cancel()
        await until(lambda: server.parts == ["leave"])
        assert server.joined() == {"stay"}
        await server.say("stay", privmsg("s-1", "still", channel="stay"))
        await until(lambda: len(stay_items) == 1)
        assert leave_items == [] and not stay.done()
        stay.cancel()
        await until(lambda: server.parts == ["leave", "stay"] and not server.open)
        assert pool.links == []
    finally:
        await pool.aclose()
    assert server.connections == 1


async def test_a_missing_channel_fails_alone(bus: Bus) -> None:
    async with TwitchIrcServer(channels={"real1", "real2"}) as server:
        settings = pool_settings(server.url, twitch_join_timeout=0.3)
        pool = TwitchPool(settings)
        session = f"missing{id(pool)}"
        workers = [Worker(pool.adapter(ch), bus, session, settings) for ch in ("real1", "real2")]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        ghost, _ = await collect(pool, "ghost")
        error = await settle(ghost)
        await asyncio.sleep(0.4)  # past the timeout: the real ones stay
        for n, channel in enumerate(("real1", "real2")):
            await server.say(channel, privmsg(f"m-{n}", "here", channel=channel))
        events = await wait_for_events(bus, session, 2)
        states = [worker.adapter.status.state for worker in workers]
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)
        await pool.aclose()
    assert isinstance(error, ChannelNotFound) and error.channel == "ghost"
    assert "#ghost did not answer within 0.3 s of JOIN" in str(error)
    assert states == ["connected", "connected"]
    assert sorted(e.payload["id"] for e in events) == ["twitch:m-0", "twitch:m-1"]
    assert server.connections == 1 and "ghost" not in server.parts


async def test_two_adapters_of_one_channel_join_it_once(server: TwitchIrcServer) -> None:
    pool = TwitchPool(pool_settings(server.url))
    (first, first_items), (second, second_items) = [await collect(pool, "same") for _ in "ab"]
    try:
        await until(lambda: server.joined() == {"same"})
        await server.say("same", privmsg("d-1", "both", channel="same"))
        await until(lambda: len(first_items) == len(second_items) == 1)
        first.cancel()
        await asyncio.sleep(0.05)
        assert server.parts == [] and not second.done()
    finally:
        await pool.aclose()
    assert [channel for _, channel in server.joins] == ["same"]
