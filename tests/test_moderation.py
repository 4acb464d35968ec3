"""Moderation against a real Redis: deletions leave the history, mutes, roles."""

from __future__ import annotations

import pytest

from broker import Bus, OutgoingEvent
from broker.models import ErrorCode, MessageType, ProtocolError, Role
from server.interactions.catalog import STATE_PARTS
from tests.support.studio import open_studio

DELETE = MessageType.CHAT_DELETE


def chat(message_id: str, username: str, platform: str = "twitch") -> OutgoingEvent:
    payload = {
        "id": f"{platform}:{message_id}",
        "platform": platform,
        "username": username,
        "text": f"message {message_id}",
        "timestamp": 1,
    }
    return OutgoingEvent("chat.message", payload, dedupe_id=payload["id"])


async def test_a_producer_deletes_a_message_everywhere_and_from_replay(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        await bus.publish_many(studio.session_id, "chat", [chat("1", "a"), chat("2", "b")])
        staff = studio.actor(Role.PRODUCER, "producer-1")
        reply = await studio.do(staff, DELETE, {"messageId": "twitch:1", "reason": "spam"})
        assert reply["removedFromHistory"] == 1
        texts = [e.payload["text"] for e in await studio.events("chat.message")]
        assert texts == ["message 2"]
        [deletion] = await studio.events("chat.delete")
        assert deletion.kind == "chat"
        assert deletion.payload["messageId"] == "twitch:1" and deletion.payload["reason"] == "spam"


async def test_deleting_every_message_of_a_user_on_a_platform(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        await bus.publish_many(
            studio.session_id,
            "chat",
            [
                chat("1", "troll"),
                chat("2", "fan"),
                chat("3", "troll"),
                chat("4", "troll", "youtube"),
            ],
        )
        artist = studio.actor(Role.ARTIST)
        reply = await studio.do(artist, DELETE, {"username": "troll", "platform": "twitch"})
        assert reply["removedFromHistory"] == 2
        left = [e.payload["id"] for e in await studio.events("chat.message")]
        assert left == ["twitch:2", "youtube:4"]


async def test_viewers_cannot_moderate(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        await bus.publish_many(studio.session_id, "chat", [chat("1", "a")])
        viewer = studio.actor()
        for kind, payload in (
            (DELETE, {"messageId": "twitch:1"}),
            (MessageType.CHAT_MUTE, {"userId": "x", "muted": True}),
        ):
            with pytest.raises(ProtocolError) as caught:
                await studio.do(viewer, kind, payload)
            assert caught.value.code == ErrorCode.FORBIDDEN
        assert len(await studio.events("chat.message")) == 1
        assert not await studio.events("chat.delete", "chat.mute")


async def test_mute_and_unmute_are_announced_and_in_session_state(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        staff = studio.actor(Role.PRODUCER, "producer-1")
        await studio.do(staff, MessageType.CHAT_MUTE, {"userId": "fan-9", "muted": True})
        state: dict = {}
        for part in STATE_PARTS:
            state.update(await part(studio.services, studio.session_id))
        assert state["mutedUsers"] == ["fan-9"]
        await studio.do(staff, MessageType.CHAT_MUTE, {"userId": "fan-9", "muted": False})
        events = await studio.events("chat.mute")
        assert [(e.payload["userId"], e.payload["muted"]) for e in events] == [
            ("fan-9", True),
            ("fan-9", False),
        ]
