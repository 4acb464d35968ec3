"""Fleet workers in this process on a real Redis, reading the chatty Twitch IRC fake.

Worker processes killed with SIGKILL are in ``test_fleet_failover.py``; the fair-share rule
alone in ``test_fleet_share.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from broker import Bus, connect, keys
from broker.models import Session, SessionStatus
from broker.sources import SourceHealth, SourceSpec, SourceStore
from config import IngestSettings
from ingest.fleet.registry import Registry
from ingest.fleet.worker import FleetWorker
from server.interactions.sessions import SessionStore
from tests.support.fleet import ChattyTwitch, chat_ids
from tests.support.loopback import free_port
from tests.support.redis import start_private_redis


@pytest.fixture
def fleet() -> str:
    return f"f{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def twitch() -> AsyncIterator[ChattyTwitch]:
    async with ChattyTwitch(rate=20) as server:
        yield server


def fast_settings(irc_url: str, **more: object) -> IngestSettings:
    return IngestSettings.model_validate(
        {
            "twitch_irc_url": irc_url,
            "batch_interval_ms": 10,
            "reconnect_initial": 0.2,
            "reconnect_max": 1.0,
            "reconnect_attempts": 100,
            "fleet_lease_ttl": 2.0,
            "fleet_renew_interval": 0.4,
            "fleet_reconcile_interval": 0.3,
            **more,
        }
    )


async def live_session(bus: Bus) -> str:
    session_id = f"s{uuid.uuid4().hex[:10]}"
    await SessionStore(bus).create(
        Session(id=session_id, artist_id="a", title="t", status=SessionStatus.LIVE)
    )
    return session_id


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(worker: FleetWorker) -> AsyncIterator[FleetWorker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)


def channel_of(message_id: str) -> tuple[str, int]:
    channel, _, n = message_id.removeprefix("twitch:").rpartition("-")
    return channel, int(n)


async def test_one_reading_publishes_to_every_session_once(
    bus: Bus, fleet: str, twitch: ChattyTwitch
) -> None:
    first, second = await live_session(bus), await live_session(bus)
    store = SourceStore(bus.redis, fleet)
    for session_id in (first, second):
        await store.add(session_id, SourceSpec(platform="twitch", target="shared"))
    worker = FleetWorker(bus, fast_settings(twitch.url), fleet=fleet)
    async with running(worker):
        await until(lambda: _has(bus, first, 20))
    ids_first, ids_second = await chat_ids(bus.redis, first), await chat_ids(bus.redis, second)
    assert twitch.connections == 1  # read once
    assert ids_first == ids_second
    assert len(set(ids_first)) == len(ids_first)
    # a clean stop released the lease and the worker's record
    assert await bus.redis.get(keys.fleet_lease(fleet, "twitch:shared", 0)) is None
    assert await bus.redis.hgetall(keys.fleet_workers(fleet)) == {}


async def _has(bus: Bus, session_id: str, count: int) -> bool:
    return len(await chat_ids(bus.redis, session_id)) >= count


async def test_a_reading_whose_lease_was_taken_publishes_nothing_more(
    bus: Bus, fleet: str, twitch: ChattyTwitch
) -> None:
    session_id = await live_session(bus)
    await SourceStore(bus.redis, fleet).add(session_id, SourceSpec(platform="twitch", target="a"))
    # renewals rarely, so only the check before each batch can notice the loss
    settings = fast_settings(twitch.url, fleet_lease_ttl=30.0, fleet_renew_interval=10.0)
    worker = FleetWorker(bus, settings, fleet=fleet)
    lease = keys.fleet_lease(fleet, "twitch:a", 0)
    async with running(worker):
        await until(lambda: _has(bus, session_id, 10))
        await bus.redis.set(lease, b"someone-else/token", px=60_000)  # another holder
        taken = time.time() * 1000
        await asyncio.sleep(1.5)  # 30 more messages sent meanwhile
        reading = next(iter(worker.running.values())).reading
        assert reading.held_back and reading.pending > 0  # read, not published
        entries = await bus.redis.xrange(keys.stream(session_id))
    late = [sid for sid, _ in entries if int(sid.split(b"-")[0]) > taken + 100]
    assert late == []  # at most the batch already past its check (<100 ms) got through
    assert await bus.redis.get(lease) == b"someone-else/token"  # the stop did not free it


async def test_a_fenced_reading_is_stopped_when_renewal_finds_another_holder(
    bus: Bus, fleet: str, twitch: ChattyTwitch
) -> None:
    session_id = await live_session(bus)
    await SourceStore(bus.redis, fleet).add(session_id, SourceSpec(platform="twitch", target="b"))
    worker = FleetWorker(bus, fast_settings(twitch.url), fleet=fleet, capacity=1)
    lease = keys.fleet_lease(fleet, "twitch:b", 0)
    async with running(worker):
        await until(lambda: _has(bus, session_id, 5))
        await bus.redis.set(lease, b"other-worker/t", px=60_000)
        await until(lambda: _true(not worker.running), timeout=3)
        count = len(await chat_ids(bus.redis, session_id))
        await asyncio.sleep(1.0)
        assert len(await chat_ids(bus.redis, session_id)) == count
        assert twitch.open_connections == 0  # it stopped reading, too


async def _true(value: bool) -> bool:
    return value


async def test_an_ended_session_gets_nothing_more_and_its_sources_are_released(
    bus: Bus, fleet: str, twitch: ChattyTwitch
) -> None:
    staying, ending = await live_session(bus), await live_session(bus)
    store = SourceStore(bus.redis, fleet)
    await store.add(staying, SourceSpec(platform="twitch", target="both"))
    await store.add(ending, SourceSpec(platform="twitch", target="both"))
    await store.add(ending, SourceSpec(platform="twitch", target="only"))
    worker = FleetWorker(bus, fast_settings(twitch.url), fleet=fleet)
    async with running(worker):
        await until(lambda: _has(bus, ending, 30))
        await SessionStore(bus).end(ending, ended_by="a")
        ended_at = time.time() * 1000
        await until(lambda: _missing(bus, keys.fleet_lease(fleet, "twitch:only", 0)), timeout=3)
        before = len(await chat_ids(bus.redis, staying))
        await asyncio.sleep(1.0)
        assert len(await chat_ids(bus.redis, staying)) > before  # the shared one goes on
        entries = await bus.redis.xrange(keys.stream(ending))
    late = [
        sid
        for sid, fields in entries
        if int(sid.split(b"-")[0]) > ended_at + 100 and b"chat.message" in fields[b"e"]
    ]
    assert late == []


async def _missing(bus: Bus, key: str) -> bool:
    return await bus.redis.get(key) is None


async def _outage(
    tmp_path: Path, twitch: ChattyTwitch, fleet: str, down: float, buffer_limit: int
) -> tuple[list[str], FleetWorker, dict[str, set[int]], list[SourceHealth]]:
    """A worker reading two channels while its private Redis is killed for ``down``
    seconds and restarted; the session's chat ids, the worker, and what the fake sent."""
    port = free_port()
    server = start_private_redis(tmp_path, port)
    client = await connect(f"redis://127.0.0.1:{port}")
    bus = Bus(client, history_size=10_000)
    try:
        session_id = await live_session(bus)
        store = SourceStore(client, fleet)
        for target in ("x", "y"):
            await store.add(session_id, SourceSpec(platform="twitch", target=target))
        worker = FleetWorker(
            bus, fast_settings(twitch.url, fleet_buffer_limit=buffer_limit), fleet=fleet
        )
        async with running(worker):
            await until(lambda: _has(bus, session_id, 20))
            server.terminate()  # SIGKILL
            await asyncio.sleep(down)
            assert not worker.reachable
            buffered = sum(r.reading.pending for r in worker.running.values())
            assert buffered > 0
            server = start_private_redis(tmp_path, port)
            returned = time.monotonic()
            await until(lambda: _settled(worker), timeout=20)
            print(f"owned again {time.monotonic() - returned:.2f} s after Redis returned")
            sent_until = {c: set(ns) for c, ns in twitch.sent.items()}
            await asyncio.sleep(2 * worker.settings.fleet_reconcile_interval)
            # a fresh client: the test's own may hold a connection the restart closed
            reader = await connect(f"redis://127.0.0.1:{port}")
            health = await Registry(reader, fleet).health()
        ids = await chat_ids(reader, session_id)
        await reader.aclose()
        return ids, worker, sent_until, health
    finally:
        await client.aclose()
        server.stop()


async def _settled(worker: FleetWorker) -> bool:
    readings = [r.reading for r in worker.running.values()]
    return (
        worker.reachable
        and len(readings) == 2
        and all(r.lease.valid() and r.pending == 0 and not r.held_back for r in readings)
    )


@pytest.mark.slow
@pytest.mark.parametrize("down", [4.0, 20.0], ids=["4s", "20s"])
async def test_what_was_read_while_redis_was_away_is_published_once(
    tmp_path: Path, fleet: str, twitch: ChattyTwitch, down: float
) -> None:
    ids, worker, sent, _ = await _outage(tmp_path, twitch, fleet, down, 10_000)
    assert len(ids) == len(set(ids))  # once
    got: dict[str, set[int]] = {}
    for message_id in ids:
        channel, n = channel_of(message_id)
        got.setdefault(channel, set()).add(n)
    for channel in ("x", "y"):
        # every message sent from the first published one until the end, none missing
        first = min(got[channel])
        expected = {n for n in sent[channel] if n >= first}
        assert expected - got[channel] == set()
    assert worker.overflow == 0


@pytest.mark.slow
async def test_a_full_outage_buffer_counts_and_reports_what_it_dropped(
    tmp_path: Path, fleet: str, twitch: ChattyTwitch
) -> None:
    ids, worker, _, health = await _outage(tmp_path, twitch, fleet, 3.0, 10)
    assert len(ids) == len(set(ids))
    assert worker.overflow >= 2 * (3.0 * 20 - 10) * 0.7  # two channels at 20/s for 3 s
    assert {h.source for h in health if "buffer overflow" in h.last_error} == {
        "twitch:x",
        "twitch:y",
    }


async def test_a_source_naming_unknown_credentials_fails_in_its_health(
    bus: Bus, fleet: str, twitch: ChattyTwitch
) -> None:
    session_id = await live_session(bus)
    store = SourceStore(bus.redis, fleet)
    await store.add(session_id, SourceSpec(platform="twitch", target="c", credentials="nope"))
    settings = fast_settings(twitch.url, fleet_credentials={"label": {"twitch_nick": "bot"}})
    worker = FleetWorker(bus, settings, fleet=fleet)
    registry = Registry(bus.redis, fleet)
    async with running(worker):
        await until(lambda: _has_health(registry))
        [health] = await registry.health()
    assert health.source == "twitch:c" and health.state == "failed"
    assert "no credentials named 'nope'" in health.last_error and "label" in health.last_error
    assert await bus.redis.get(keys.fleet_lease(fleet, "twitch:c", 0)) is None
    assert twitch.connections == 0


async def _has_health(registry: Registry) -> bool:
    return bool(await registry.health())


async def test_stopping_while_a_reading_is_handed_back_does_not_hang(
    bus: Bus, fleet: str, twitch: ChattyTwitch
) -> None:
    """A cancel that arrived while waiting for a reading to stop was swallowed, so the
    reconcile loop never ended and SIGTERM left the worker running (found by bench/fleet.py)."""
    session_id = await live_session(bus)
    await SourceStore(bus.redis, fleet).add(session_id, SourceSpec(platform="twitch", target="h"))
    worker = FleetWorker(bus, fast_settings(twitch.url), fleet=fleet)
    await worker.reconcile()
    [slot] = list(worker.running)
    reading = worker.running[slot].task
    dropping = asyncio.create_task(worker._drop(slot))
    await asyncio.sleep(0)  # inside the wait for the reading to stop
    dropping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(dropping, 5)
    assert dropping.cancelled()
    await asyncio.wait_for(reading, 10)  # the reading itself still stops


async def test_a_simulate_source_is_demo_chat_in_the_four_platforms_looks(
    bus: Bus, fleet: str, twitch: ChattyTwitch
) -> None:
    """``vstudio up``'s demo source: a worker reads it like any other, and what reaches the
    session carries the seed's platforms, never the source kind."""
    session_id = await live_session(bus)
    await SourceStore(bus.redis, fleet).add(
        session_id, SourceSpec(platform="simulate", target="200")
    )
    worker = FleetWorker(bus, fast_settings(twitch.url), fleet=fleet)
    async with running(worker):
        await until(lambda: _has(bus, session_id, 30))
        [health] = await Registry(bus.redis, fleet).health()
    assert health.source == "simulate:200" and health.owner == worker.id
    published = len(await chat_ids(bus.redis, session_id))
    assert worker.status()["published"] >= published  # its last status line still counts them
    entries = await bus.redis.xrange(keys.stream(session_id))
    platforms = {orjson.loads(fields[b"e"])["payload"].get("platform") for _, fields in entries} - {
        None
    }
    assert platforms and platforms <= {"twitch", "youtube", "tiktok", "discord"}
    assert await bus.redis.get(keys.fleet_lease(fleet, "simulate:200", 0)) is None
    assert twitch.connections == 0  # no platform was asked
