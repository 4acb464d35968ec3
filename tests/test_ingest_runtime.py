"""The worker runtime against a real Redis: batching, kinds, dedupe, heartbeat, clean stop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest

from broker import Bus
from broker.models import ChatDelete, NormalizedChatMessage, Platform, PlatformEvent
from config import IngestSettings
from ingest.base import AdapterStatus, Emit, IngestItem
from ingest.batching import grouped_by_kind, to_outgoing
from ingest.heartbeat import read_records
from ingest.runtime import SourceExhausted, Worker, wait_for_room
from ingest.simulate import ChatGenerator, SimulatedChat
from ingest.stats import WorkerStats


def chat(n: int, platform: Platform = Platform.TWITCH) -> NormalizedChatMessage:
    return NormalizedChatMessage(
        id=f"{platform.value}:m{n}",
        platform=platform,
        username=f"user{n}",
        text=f"message {n}",
        timestamp=1_700_000_000_000 + n,
    )


def event(n: int) -> PlatformEvent:
    return PlatformEvent(
        id=f"tiktok:g{n}", platform=Platform.TIKTOK, kind="gift", username="fan", timestamp=1
    )


class ScriptedSource:
    """An adapter that emits a fixed list, then ends (``finite``) or stays connected."""

    platform = Platform.TWITCH
    target = "script"

    def __init__(self, items: Sequence[IngestItem], *, finite: bool = True) -> None:
        self.items = list(items)
        self.finite = finite
        self.status = AdapterStatus()

    async def run(self, emit: Emit) -> None:
        self.status.state = "connected"
        for item in self.items:
            emit(item)
        if self.finite:
            raise SourceExhausted
        await asyncio.Event().wait()


def settings(**extra: object) -> IngestSettings:
    return IngestSettings(
        **{"batch_interval_ms": 5, "heartbeat_ttl": 4, "reconnect_initial": 0.01, **extra}
    )


# --- pure parts ---------------------------------------------------------------------------------


def test_items_map_to_kinds_types_and_dedupe_ids() -> None:
    kind, out = to_outgoing(chat(1))
    assert (kind, out.type, out.dedupe_id) == ("chat", "chat.message", "twitch:m1")
    assert out.payload["id"] == "twitch:m1" and "displayName" not in out.payload
    kind, out = to_outgoing(ChatDelete(message_id="twitch:m1"))
    assert (kind, out.type, out.dedupe_id) == ("chat", "chat.delete", "delete:twitch:m1")
    kind, out = to_outgoing(ChatDelete(username="bob", platform=Platform.YOUTUBE))
    assert (kind, out.dedupe_id) == ("chat", None)
    kind, out = to_outgoing(event(1))
    assert (kind, out.type, out.dedupe_id) == ("events", "platform.event", "tiktok:g1")
    with pytest.raises(TypeError):
        to_outgoing("not an item")  # type: ignore[arg-type]  # the wrong type on purpose


def test_grouping_keeps_order_in_runs() -> None:
    groups = grouped_by_kind([chat(1), chat(2), event(1), chat(3)])
    assert [(kind, len(events)) for kind, events in groups] == [
        ("chat", 2),
        ("events", 1),
        ("chat", 1),
    ]


def test_rate_over_the_window() -> None:
    now = [100.0]
    stats = WorkerStats(clock=lambda: now[0])
    assert stats.rate() == 0.0
    stats.sample()
    for _ in range(10):
        now[0] += 1
        stats.received += 50
        stats.sample()
    assert stats.rate() == pytest.approx(50.0)
    assert stats.last_message_age(5_000) is None
    stats.last_message_ms = 1_000
    assert stats.last_message_age(3_500) == 2.5


def test_generator_makes_valid_platform_shaped_messages() -> None:
    generator = ChatGenerator(seed=7)
    items = [generator.next_item(1_700_000_000_000 + n) for n in range(2000)]
    messages = [item for item in items if isinstance(item, NormalizedChatMessage)]
    assert {m.platform for m in messages} == {"twitch", "youtube", "tiktok", "discord"}
    assert any(isinstance(item, ChatDelete) for item in items)
    assert any(isinstance(item, PlatformEvent) for item in items)
    assert len({m.id for m in messages}) == len(messages)
    with_emotes = [m for m in messages if m.emotes]
    assert with_emotes
    for message in with_emotes:
        for emote in message.emotes or []:
            for start, end in emote.positions:
                span = message.text[start : end + 1]
                assert span == emote.name or span.startswith(f"<:{emote.name}:")
    assert any(m.is_moderator for m in messages) and any(m.is_subscriber for m in messages)


# --- the worker ---------------------------------------------------------------------------------


async def test_everything_is_published_in_order_on_its_kind(bus: Bus, session_id: str) -> None:
    items: list[IngestItem] = [chat(1), chat(2), event(1), ChatDelete(message_id="twitch:m1")]
    items += [chat(n) for n in range(3, 1003)]
    worker = Worker(ScriptedSource(items), bus, session_id, settings(batch_size=64))
    await worker.run()
    events = (await bus.replay(session_id, "0-0")).events
    assert [e.type for e in events[:4]] == [
        "chat.message",
        "chat.message",
        "platform.event",
        "chat.delete",
    ]
    assert [e.kind for e in events[:4]] == ["chat", "chat", "events", "chat"]
    assert [e.payload["id"] for e in events[4:]] == [f"twitch:m{n}" for n in range(3, 1003)]
    assert worker.stats.published == 1004 and worker.stats.events == 1
    assert worker.stats.deletions == 1 and worker.pending == 0


async def test_the_same_message_twice_is_published_once(bus: Bus, session_id: str) -> None:
    items = [chat(1), chat(1), ChatDelete(message_id="twitch:m1")] * 2
    worker = Worker(ScriptedSource(items), bus, session_id, settings())
    await worker.run()
    events = (await bus.replay(session_id, "0-0")).events
    assert [e.type for e in events] == ["chat.message", "chat.delete"]
    assert worker.stats.duplicates == 4


async def test_stop_flushes_everything_already_emitted(bus: Bus, session_id: str) -> None:
    items = [chat(n) for n in range(20_000)]
    roomy = Bus(bus.redis, history_size=50_000)
    worker = Worker(ScriptedSource(items, finite=False), roomy, session_id, settings())
    running = asyncio.create_task(worker.run())
    while worker.stats.received < 20_000:
        await asyncio.sleep(0.001)
    worker.stop()
    await running
    assert worker.pending == 0
    assert await bus.redis.xlen(f"vstudio:session:{{{session_id}}}:log") == 20_000


async def test_heartbeat_record_while_running_gone_after_stop(bus: Bus, session_id: str) -> None:
    worker = Worker(SimulatedChat(200, seed=3), bus, session_id, settings())
    running = asyncio.create_task(worker.run())
    key = f"vstudio:ingest:worker:{worker.worker_id}"
    for _ in range(200):
        raw = await bus.redis.get(key)
        if raw and orjson.loads(raw)["received"] > 0:
            break
        await asyncio.sleep(0.05)
    [record] = await read_records(bus.redis, session_id)
    assert record["workerId"] == worker.worker_id and record["platform"] == "simulate"
    assert record["session"] == session_id and record["state"] == "connected"
    assert {"host", "pid", "target", "received", "lastMessageAt", "reconnects", "rate"} <= set(
        record
    )
    assert 0 < await bus.redis.ttl(key) <= 4
    worker.stop()
    await running
    assert await bus.redis.exists(key) == 0
    assert await read_records(bus.redis, session_id) == []


async def test_wait_for_room_holds_a_fast_source_back(bus: Bus, session_id: str) -> None:
    worker = Worker(ScriptedSource([]), bus, session_id, settings(batch_size=10))
    for n in range(1000):
        worker.emit(chat(n))
    waiter = asyncio.create_task(wait_for_room(worker.emit))
    await asyncio.sleep(0.05)
    assert not waiter.done()  # 1000 waiting > 20 batches of 10
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(waiter, 5)
    await running
    assert worker.pending == 0 and worker.stats.published == 1000


async def test_a_new_state_reaches_the_heartbeat_at_once(bus: Bus, session_id: str) -> None:
    worker = Worker(SimulatedChat(50, seed=1), bus, session_id, settings(heartbeat_ttl=60))
    running = asyncio.create_task(worker.run())
    try:
        states = []
        for _ in range(40):  # 2 s, far less than the 20 s between regular beats
            records = await read_records(bus.redis, session_id)
            states = [record["state"] for record in records]
            if states == ["connected"]:
                break
            await asyncio.sleep(0.05)
        assert states == ["connected"]
    finally:
        worker.stop()
        await running
