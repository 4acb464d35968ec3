"""The bridge's handling of each publish, driven directly against a real Redis."""

from __future__ import annotations

import json
import uuid
from typing import Any

from broker import Bus
from broker.models import Session, now_ms
from server.bridge import SeedBridge
from server.interactions.sessions import SessionStore


class StubHub:
    """Records what the bridge broadcasts to local clients."""

    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], str | None]] = []

    def broadcast(
        self, data: bytes, type_: str, payload: dict[str, Any], session_id: str | None = None
    ) -> int:
        self.sent.append((json.loads(data), session_id))
        return 1


async def bridge_for(bus: Bus) -> tuple[SeedBridge, StubHub, str]:
    store = SessionStore(bus)
    session = await store.create(Session(id=uuid.uuid4().hex[:12], artist_id="a", title="t"))
    hub = StubHub()
    return SeedBridge(bus, store, hub), hub, session.id  # type: ignore[arg-type]


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
    other = SeedBridge(bus, bridge.sessions, StubHub())  # type: ignore[arg-type]
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
    channel = "vstudio:global:announcements"
    wrapped = {"type": "announcement", "payload": {"text": "a", "sessionId": sid}}
    assert await bridge.on_message(channel, json.dumps(wrapped)) == "announced"
    assert await bridge.on_message(channel, json.dumps({"text": "b"})) == "announced"
    assert await bridge.on_message(channel, b"c") == "announced"
    for bad in (b"   ", json.dumps({"type": "poll.end", "payload": {}}), b"42", b'{"x": 1}'):
        assert await bridge.on_message(channel, bad) == "dropped", bad
    assert [(frame["payload"]["text"], target) for frame, target in hub.sent] == [
        ("a", sid),
        ("b", None),
        ("c", None),
    ]
    assert all(frame["type"] == "announcement" and frame["timestamp"] for frame, _ in hub.sent)


async def test_other_channels_are_ignored(bus: Bus) -> None:
    bridge, hub, sid = await bridge_for(bus)
    assert await bridge.on_message(f"vstudio:session:{{{sid}}}:chat", b"1-0 {}") == "ignored"
    assert await bridge.on_message(f"vstudio:session:{sid}:log", b"{}") == "ignored"
    assert not hub.sent
