"""The bridge's handling of each publish, driven directly against a real Redis."""

from __future__ import annotations

import json
import uuid
from typing import Any

from broker import Bus
from broker.models import Role, Session, now_ms
from config import ServerSettings
from server.bridge import SeedBridge
from server.fanout.hub import Hub, Room
from server.identity.participant import Participant
from server.interactions.sessions import SessionStore
from server.metrics import Metrics
from server.transport.sse import SseClient


async def no_state(session_id: str) -> dict[str, Any]:
    return {}


async def bridge_for(bus: Bus) -> tuple[SeedBridge, Hub, str]:
    """A bridge over a real hub (no feed running: clients are put in its rooms by hand)."""
    store = SessionStore(bus)
    session = await store.create(Session(id=uuid.uuid4().hex[:12], artist_id="a", title="t"))
    hub = Hub(bus, ServerSettings(), Metrics(f"bridge-{uuid.uuid4().hex[:6]}"), no_state)
    return SeedBridge(bus, store, hub), hub, session.id


def listener(hub: Hub, session_id: str) -> SseClient:
    """A real SSE subscriber of ``session_id`` in this process's hub."""
    client = SseClient(Participant(session_id, "u", "u", Role.VIEWER), buffer_limit=1 << 20)
    hub.rooms.setdefault(session_id, Room(session_id)).pushed.add(client)
    return client


def received(client: SseClient) -> list[dict[str, Any]]:
    """The payloads of the SSE events queued for ``client``."""
    return [
        json.loads(line.removeprefix("data: "))
        for line in client.take().decode().splitlines()
        if line.startswith("data: ")
    ]


def chat(text: str) -> dict[str, Any]:
    return {
        "id": f"youtube:{uuid.uuid4().hex[:8]}",
        "platform": "youtube",
        "username": "u",
        "text": text,
        "timestamp": now_ms(),
    }


async def test_each_accepted_type_lands_in_the_history_once(bus: Bus) -> None:
    bridge, _, sid = await bridge_for(bus)
    chat_channel, events_channel = f"vstudio:session:{sid}:chat", f"vstudio:session:{sid}:events"
    first, second = chat("one"), chat("two")
    aggregate = json.dumps({"type": "chat.aggregate", "payload": {"messages": [first, second]}})
    assert await bridge.on_message(chat_channel, aggregate) == "bridged"
    assert await bridge.on_message(chat_channel, aggregate) == "duplicate"  # ids seen
    delete = {"type": "chat.delete", "payload": {"messageId": first["id"]}}
    assert await bridge.on_message(chat_channel, json.dumps(delete)) == "bridged"
    gift = {
        "id": "tiktok:g1",
        "platform": "tiktok",
        "kind": "gift",
        "username": "fan",
        "timestamp": now_ms(),
    }
    event = json.dumps({"type": "platform.event", "payload": gift})
    assert await bridge.on_message(events_channel, event) == "bridged"
    notice = json.dumps({"type": "announcement", "payload": {"text": "hi"}})
    assert await bridge.on_message(events_channel, notice) == "bridged"
    other = SeedBridge(bus, bridge.sessions, bridge.hub)
    assert await other.on_message(events_channel, notice) == "duplicate"  # the claim
    replay = await bus.replay(sid, "0-0")
    assert [(e.kind, e.type) for e in replay.events] == [
        ("chat", "chat.message"),
        ("chat", "chat.message"),
        ("chat", "chat.delete"),
        ("events", "platform.event"),
        ("events", "announcement"),
    ]


async def test_global_announcements_in_every_accepted_form(bus: Bus) -> None:
    bridge, hub, sid = await bridge_for(bus)
    here, elsewhere = listener(hub, sid), listener(hub, "another-session")
    channel = "vstudio:global:announcements"
    wrapped = {"type": "announcement", "payload": {"text": "a", "sessionId": sid}}
    assert await bridge.on_message(channel, json.dumps(wrapped)) == "announced"
    assert await bridge.on_message(channel, json.dumps({"text": "b"})) == "announced"
    assert await bridge.on_message(channel, b"c") == "announced"
    for bad in (b"   ", json.dumps({"type": "poll.end", "payload": {}}), b"42", b'{"x": 1}'):
        assert await bridge.on_message(channel, bad) == "dropped", bad
    assert [notice["text"] for notice in received(here)] == ["a", "b", "c"]
    assert [notice["text"] for notice in received(elsewhere)] == ["b", "c"]  # not a's session
    await hub.feed.close()


async def test_other_channels_are_ignored(bus: Bus) -> None:
    bridge, hub, sid = await bridge_for(bus)
    client = listener(hub, sid)
    assert await bridge.on_message(f"vstudio:session:{{{sid}}}:chat", b"1-0 {}") == "ignored"
    assert await bridge.on_message(f"vstudio:session:{sid}:log", b"{}") == "ignored"
    assert not received(client)
    assert not (await bus.replay(sid, "0-0")).events
    await hub.feed.close()
