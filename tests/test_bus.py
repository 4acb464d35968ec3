"""The publish primitive, history replay and dedupe against a real Redis."""

from __future__ import annotations

import asyncio

import orjson

from broker import Bus, OutgoingEvent, SessionFeed, keys
from broker.bus import parse_stream_id
from broker.connection import is_cluster


async def test_publish_appends_and_publishes_with_the_same_id(bus: Bus, session_id: str) -> None:
    """Sharded pub/sub (SSUBSCRIBE) on a cluster, classic on a single Redis (6.2 has no other)."""
    pubsub = bus.redis.pubsub()
    if is_cluster(bus.redis):  # redis-py's cluster pub/sub reads shard channels on their own
        read, expected = pubsub.get_sharded_message, "smessage"
        await pubsub.ssubscribe(keys.chat_channel(session_id))
    else:
        read, expected = pubsub.get_message, "message"
        await pubsub.subscribe(keys.chat_channel(session_id))
    await read(timeout=1)  # subscribe confirmation

    event_id = await bus.publish(session_id, "chat", "chat.message", {"text": "hi"})

    message = await read(ignore_subscribe_messages=True, timeout=2)
    assert message is not None
    assert message["type"] == expected
    published_id, _, body = message["data"].partition(b" ")
    assert published_id.decode() == event_id
    assert orjson.loads(body)["payload"] == {"text": "hi"}
    [(stored_id, fields)] = await bus.redis.xrange(keys.stream(session_id))
    assert stored_id.decode() == event_id
    assert fields[b"k"] == b"chat"
    await pubsub.aclose()


async def test_replay_returns_events_after_an_id_in_order(bus: Bus, session_id: str) -> None:
    ids = [await bus.publish(session_id, "events", "tip.received", {"n": n}) for n in range(5)]
    replay = await bus.replay(session_id, ids[1])
    assert [event.id for event in replay.events] == ids[2:]
    assert [event.payload["n"] for event in replay.events] == [2, 3, 4]
    assert replay.complete
    assert (await bus.replay(session_id, "0-0")).complete


async def test_replay_from_before_the_window_is_incomplete(bus: Bus, session_id: str) -> None:
    small = Bus(bus.redis, history_size=10)
    first = await small.publish(session_id, "events", "x", {})
    for n in range(300):  # MAXLEN ~ trims whole nodes, so go well past the cap
        await small.publish(session_id, "events", "x", {"n": n})
    replay = await small.replay(session_id, first)
    assert not replay.complete
    assert len(replay.events) < 300


async def test_frame_adds_the_id_without_reencoding(bus: Bus, session_id: str) -> None:
    event_id = await bus.publish(session_id, "polls", "poll.results", {"results": [1, 2]})
    [event] = (await bus.replay(session_id, "0-0")).events
    frame = orjson.loads(event.frame())
    assert frame["id"] == event_id
    assert frame["type"] == "poll.results"
    assert frame["payload"] == {"results": [1, 2]}
    assert isinstance(frame["timestamp"], int)


async def test_dedupe_publishes_a_message_id_once(bus: Bus, session_id: str) -> None:
    batch = [
        OutgoingEvent("chat.message", {"id": "twitch:a"}, dedupe_id="twitch:a"),
        OutgoingEvent("chat.message", {"id": "twitch:b"}, dedupe_id="twitch:b"),
        OutgoingEvent("chat.message", {"id": "twitch:a"}, dedupe_id="twitch:a"),
    ]
    first = await bus.publish_many(session_id, "chat", batch)
    again = await bus.publish_many(session_id, "chat", batch[:2])
    assert first[0] and first[1] and first[2] is None
    assert again == [None, None]
    assert await bus.stream_id_of(session_id, "twitch:b") == first[1]
    assert await bus.stream_id_of(session_id, "twitch:zzz") is None
    assert await bus.redis.xlen(keys.stream(session_id)) == 2


async def test_two_publishers_racing_on_one_message_publish_it_once(
    bus: Bus, session_id: str
) -> None:
    events = [OutgoingEvent("chat.message", {"n": n}, dedupe_id=f"twitch:{n}") for n in range(200)]
    racers = [bus.publish_many(session_id, "chat", events) for _ in range(4)]
    results = await asyncio.gather(*racers)
    published = [event_id for batch in results for event_id in batch if event_id]
    assert len(published) == 200
    assert await bus.redis.xlen(keys.stream(session_id)) == 200


async def test_feed_delivers_live_events_after_follow(bus: Bus, session_id: str) -> None:
    feed = SessionFeed(bus)
    received: list[str] = []

    async def read() -> None:
        async for item in feed:
            received.append(item.payload["n"])
            if len(received) == 3:
                return

    reader = asyncio.create_task(read())
    await asyncio.wait_for(feed.follow(session_id), 5)
    for n in ("a", "b", "c"):
        await bus.publish(session_id, "events", "x", {"n": n})
    await asyncio.wait_for(reader, 5)
    await feed.close()
    assert received == ["a", "b", "c"]


async def test_feed_follow_after_an_id_replays_then_goes_live(bus: Bus, session_id: str) -> None:
    ids = [await bus.publish(session_id, "chat", "x", {"n": n}) for n in range(3)]
    feed = SessionFeed(bus)
    received: list[int] = []

    async def read() -> None:
        async for item in feed:
            received.append(item.payload["n"])
            if len(received) == 3:
                return

    reader = asyncio.create_task(read())
    await asyncio.wait_for(feed.follow(session_id, after_id=ids[0]), 5)
    await bus.publish(session_id, "chat", "x", {"n": 3})
    await asyncio.wait_for(reader, 5)
    await feed.close()
    assert received == [1, 2, 3]


def test_stream_ids_order_numerically() -> None:
    assert parse_stream_id("10-2") > parse_stream_id("9-30")
    assert parse_stream_id("5-10") > parse_stream_id("5-9")


async def test_deleting_events_does_not_make_a_replay_incomplete(bus: Bus, session_id: str) -> None:
    ids = [await bus.publish(session_id, "chat", "chat.message", {"n": n}) for n in range(4)]
    assert await bus.delete_events(session_id, [ids[0], ids[2]]) == 2
    replay = await bus.replay(session_id, "0-0")
    assert [event.payload["n"] for event in replay.events] == [1, 3]
    assert replay.complete  # removed on purpose, not trimmed away
    assert await bus.delete_events(session_id, [ids[0]]) == 0  # already gone: nothing counted
    assert (await bus.replay(session_id, "0-0")).complete
