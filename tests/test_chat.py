"""Fan chat rules against a real Redis: toggles, mutes, length, the normalized message."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from broker import Bus
from broker.models import (
    ErrorCode,
    MessageType,
    NormalizedChatMessage,
    ProtocolError,
    Role,
    SessionUpdate,
)
from server.identity.participant import Participant
from server.interactions.chat import fan_message
from server.interactions.registry import Actor
from tests.support.studio import open_studio

CHAT = MessageType.CHAT_MESSAGE


def test_fan_message_is_normalized_with_badges_for_staff() -> None:
    producer = Actor(Participant("s1", "p1", "Pro", Role.PRODUCER))
    message = fan_message(producer, "hello", max_length=10, timestamp=5)
    assert message.platform == "audifi" and message.id.startswith("audifi:")
    assert message.badges == ["producer"] and message.is_moderator is True
    assert (message.username, message.display_name, message.user_id) == ("Pro", "Pro", "p1")
    fan = Actor(Participant("s1", "v1", "Fan", Role.VIEWER))
    assert fan_message(fan, "hi", max_length=10, timestamp=5).badges is None
    with pytest.raises(ProtocolError) as caught:
        fan_message(fan, "x" * 11, max_length=10, timestamp=5)
    assert caught.value.code == ErrorCode.INVALID_MESSAGE and "limit is 10" in caught.value.message


async def test_a_fan_message_is_published_once_as_normalized_chat(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        fan = studio.actor(Role.TOKEN_HOLDER, "fan-1")
        reply = await studio.do(fan, CHAT, {"text": "what a show"})
        [event] = await studio.events("chat.message")
        assert event.kind == "chat" and event.id == reply["eventId"]
        message = NormalizedChatMessage.model_validate(event.payload)
        assert message.id == reply["id"] and message.text == "what a show"
        assert message.username == fan.username and message.timestamp > 0
        # the dedupe index knows the message, so moderation can find it in the history
        assert await bus.stream_id_of(studio.session_id, message.id) == event.id


async def test_chat_off_muted_and_too_long_are_refused_with_reasons(bus: Bus) -> None:
    async with open_studio(bus, chat_max_length=20) as studio:
        fan = studio.actor()
        error = await refused(studio.do(fan, CHAT, {"text": "y" * 21}))
        assert error.code == ErrorCode.INVALID_MESSAGE and "limit is 20" in error.message
        await studio.store.update(studio.session_id, SessionUpdate(chat_enabled=False))
        error = await refused(studio.do(fan, CHAT, {"text": "hello"}))
        assert error.code == ErrorCode.FORBIDDEN and "chat is turned off" in error.message
        await studio.store.update(studio.session_id, SessionUpdate(chat_enabled=True))
        staff = studio.actor(Role.PRODUCER, "producer-1")
        await studio.do(staff, MessageType.CHAT_MUTE, {"userId": fan.user_id, "muted": True})
        error = await refused(studio.do(fan, CHAT, {"text": "hello"}))
        assert error.code == ErrorCode.FORBIDDEN and "muted" in error.message
        await studio.do(staff, MessageType.CHAT_MUTE, {"userId": fan.user_id, "muted": False})
        await studio.do(fan, CHAT, {"text": "hello again"})
        assert [e.payload["text"] for e in await studio.events("chat.message")] == ["hello again"]


async def test_chat_in_an_ended_session_is_4002(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        await studio.store.end(studio.session_id, ended_by="test")
        error = await refused(studio.do(studio.actor(), CHAT, {"text": "hi"}))
        assert error.code == ErrorCode.SESSION_ENDED


async def refused(coro: Awaitable[object]) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        await coro
    return caught.value
