"""The seed's own channel form, bridged: a worker written from the seed alone works unchanged.

Two real server processes each receive a raw ``PUBLISH vstudio:session:<id>:chat`` (no braces),
exactly as the seed's snippet does it; the session's clients on both see the message once, with
an id, and the history holds it once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from broker import Bus, connect, keys
from broker.connection import is_cluster
from broker.models import now_ms
from tests.support.cluster import plain_async_client
from tests.support.live_server import LiveServer
from tests.support.websocket import frames_for


def normalized(text: str, **extra: Any) -> dict[str, Any]:
    """A NormalizedChatMessage exactly as the seed defines it."""
    return {
        "id": f"twitch:{uuid.uuid4().hex[:10]}",
        "platform": "twitch",
        "username": "user1",
        "displayName": "User One",
        "text": text,
        "badges": ["subscriber"],
        "isSubscriber": True,
        "isModerator": False,
        "timestamp": now_ms(),
        **extra,
    }


def chat_texts(frames: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(text, frame id) of every chat message inside the frames' chat.aggregate frames."""
    return [
        (message["text"], frame.get("id"))
        for frame in frames
        if frame["type"] == "chat.aggregate"
        for message in frame["payload"]["messages"]
    ]


@pytest.fixture
async def raw(redis_url: str) -> Any:
    """A plain redis-py client, as the seed's worker would have."""
    client = plain_async_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def two_servers(server_factory: Any) -> tuple[LiveServer, LiveServer]:
    return server_factory(), server_factory()


async def test_seed_chat_publish_reaches_clients_on_every_process_once(
    two_servers: tuple[LiveServer, LiveServer], raw: Any, redis_url: str
) -> None:
    one, two = two_servers
    sid = (await one.live_session())["id"]
    message = normalized("hello from a seed worker")
    async with one.ws(sid, "fan-a") as a, two.ws(sid, "fan-b") as b:
        await a.receive_json(timeout=5)
        await b.receive_json(timeout=5)
        receivers = await raw.publish(
            f"vstudio:session:{sid}:chat",
            json.dumps({"type": "chat.message", "payload": message}),
        )
        # both processes' bridges; a cluster delivers on every node but counts one node's
        if not is_cluster(raw):
            assert receivers >= 2
        seen_a, seen_b = await asyncio.gather(frames_for(a, 1.5), frames_for(b, 1.5))
    for seen in (seen_a, seen_b):
        got = [item for item in chat_texts(seen) if item[0] == message["text"]]
        assert len(got) == 1, seen
        assert got[0][1]  # the stream id
    client = await connect(redis_url)
    try:
        replay = await Bus(client).replay(sid, "0-0")
    finally:
        await client.aclose()
    copies = [
        e for e in replay.events if e.type == "chat.message" and e.payload["id"] == message["id"]
    ]
    assert len(copies) == 1
    assert copies[0].payload["displayName"] == "User One"


async def test_seed_id_without_platform_prefix_and_idless_announcement(
    two_servers: tuple[LiveServer, LiveServer], raw: Any, redis_url: str
) -> None:
    one, two = two_servers
    sid = (await one.live_session())["id"]
    message = normalized("raw platform id", id="abc-123")  # the seed's id is any string
    async with one.ws(sid, "fan-a") as a, two.ws(sid, "fan-b") as b:
        await a.receive_json(timeout=5)
        await b.receive_json(timeout=5)
        await raw.publish(
            f"vstudio:session:{sid}:chat", json.dumps({"type": "chat.message", "payload": message})
        )
        await raw.publish(
            f"vstudio:session:{sid}:events",
            json.dumps({"type": "announcement", "payload": {"text": "doors at 9"}}),
        )
        seen_a, seen_b = await asyncio.gather(frames_for(a, 1.5), frames_for(b, 1.5))
    for seen in (seen_a, seen_b):
        assert [text for text, _ in chat_texts(seen)] == ["raw platform id"], seen
        notices = [f for f in seen if f["type"] == "announcement"]
        assert len(notices) == 1 and notices[0]["id"], seen
        assert notices[0]["payload"] == {"text": "doors at 9", "sessionId": sid}
    client = await connect(redis_url)
    try:
        replay = await Bus(client).replay(sid, "0-0")
    finally:
        await client.aclose()
    assert [e.payload["id"] for e in replay.events if e.type == "chat.message"] == [
        "twitch:abc-123"
    ]
    assert len([e for e in replay.events if e.type == "announcement"]) == 1


async def test_malformed_publishes_are_logged_and_dropped(
    live_server: LiveServer, raw: Any
) -> None:
    sid = (await live_server.live_session())["id"]
    channel = f"vstudio:session:{sid}:chat"
    unknown = f"vstudio:session:nosuch{uuid.uuid4().hex[:6]}:chat"
    bad = [
        (channel, b"not json at all"),
        (channel, b"[1, 2, 3]"),
        (channel, json.dumps({"type": "chat.message"}).encode()),
        (
            channel,
            json.dumps(
                {"type": "poll.vote", "payload": {"pollId": "p", "optionIndex": 0}}
            ).encode(),
        ),
        (channel, json.dumps({"type": "chat.message", "payload": {"text": "no id"}}).encode()),
        (unknown, json.dumps({"type": "chat.message", "payload": normalized("lost")}).encode()),
    ]
    good = normalized("still alive")
    async with live_server.ws(sid, "fan") as ws:
        await ws.receive_json(timeout=5)
        for target, data in bad:
            await raw.publish(target, data)
        await raw.publish(channel, json.dumps({"type": "chat.message", "payload": good}))
        seen = await frames_for(ws, 1.5)
    assert [text for text, _ in chat_texts(seen)] == ["still alive"], seen
    dropped = [
        json.loads(line)
        for line in live_server.log.splitlines()
        if '"bridge_dropped"' in line and (sid in line or "nosuch" in line)
    ]
    reasons = " | ".join(entry["reason"] for entry in dropped)
    for expected in (
        "not JSON",
        "not a JSON object",
        "'payload'",
        "poll.vote",
        "invalid payload",
        "unknown session",
    ):
        assert expected in reasons, reasons


async def test_our_hash_tagged_channels_are_not_bridged_again(
    live_server: LiveServer, bus: Bus
) -> None:
    sid = (await live_server.live_session())["id"]
    async with live_server.ws(sid, "fan") as ws:
        await ws.receive_json(timeout=5)
        await bus.publish(sid, "chat", "chat.message", normalized("ours"), dedupe_id=None)
        seen = await frames_for(ws, 1.0)
    assert [text for text, _ in chat_texts(seen)] == ["ours"]
    events = (await bus.replay(sid, "0-0")).events
    assert [e.type for e in events].count("chat.message") == 1


def test_seed_channel_names() -> None:
    assert keys.seed_channel("vstudio:session:abc123:chat") == ("abc123", "chat")
    assert keys.seed_channel("vstudio:session:abc123:polls") == ("abc123", "polls")
    assert keys.seed_channel(keys.chat_channel("abc123")) is None  # ours, hash-tagged
    assert keys.seed_channel("vstudio:session:abc123:log") is None
    assert keys.seed_channel("vstudio:global:announcements") is None


@pytest.mark.slow
async def test_the_bridge_subscribes_again_after_a_redis_restart(
    server_factory: Any, tmp_path: Any
) -> None:
    from tests.support.loopback import free_port
    from tests.support.redis import start_private_redis

    port = free_port()
    redis = start_private_redis(tmp_path / "redis", port)
    url = f"redis://127.0.0.1:{port}"
    try:
        server: LiveServer = server_factory(VSTUDIO_REDIS_URL=url)
        sid = (await server.live_session())["id"]
        async with server.ws(sid, "stays") as ws:
            await ws.receive_json(timeout=5)
            redis.stop()
            await asyncio.sleep(1.0)
            redis = start_private_redis(tmp_path / "redis", port)
            client = aioredis.from_url(url)
            try:
                channel = f"vstudio:session:{sid}:chat"
                async with asyncio.timeout(20):  # until the bridge listens again
                    while not await client.publish(channel, b"probe, not JSON"):
                        await asyncio.sleep(0.2)
                message = normalized("after the restart")
                body = json.dumps({"type": "chat.message", "payload": message})
                await client.publish(channel, body)
            finally:
                await client.aclose()
            texts: list[str] = []
            async with asyncio.timeout(15):
                while "after the restart" not in texts:
                    frame = await ws.receive_json()
                    texts += [text for text, _ in chat_texts([frame])]
            assert texts == ["after the restart"]
    finally:
        redis.stop()
