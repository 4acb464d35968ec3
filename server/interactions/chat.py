"""A fan's own chat message (platform ``audifi``), checked and published like ingested chat.

The rules, in the order a fan meets them: the session has not ended (4002), chat is on
(``chatEnabled``, else 4004), the fan is not muted (4004), the text fits
``chat_max_length`` (4006). The message is then published on the session's chat channel as a
``chat.message`` whose payload is a :class:`NormalizedChatMessage`, with the message id as the
dedupe id, exactly as ingestion workers publish theirs; the fan-out coalesces it with the rest
into ``chat.aggregate`` frames. A message sent with a request id (``requestId``, REST's
``Idempotency-Key``) gets an id derived from the sender, that id and the text, so a client
retrying after a lost reply or a Redis outage publishes it once.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from broker.models import (
    ChatMessageIn,
    ErrorCode,
    MessageType,
    NormalizedChatMessage,
    Platform,
    ProtocolError,
    Role,
    Session,
    SessionStatus,
    now_ms,
)
from server.interactions.moderation import is_muted
from server.interactions.registry import SEES_GATED, STAFF, Action, Actor
from server.interactions.services import Services

__all__ = ["BADGES", "fan_message", "require_open"]

BADGES: dict[Role, list[str]] = {
    Role.ARTIST: ["artist"],
    Role.PRODUCER: ["producer"],
    Role.TOKEN_HOLDER: ["holder"],
}
"""Badges shown next to a fan message by the sender's role."""


def require_open(session: Session) -> None:
    """4002 for an ended session: nothing is sent into it any more."""
    if session.status == SessionStatus.ENDED:
        raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {session.id} has ended")


def message_id(actor: Actor, text: str) -> str:
    """``audifi:<hex>``: random, or the same for a retry of one request with the same text."""
    if actor.request_id is None:
        return f"{Platform.AUDIFI.value}:{secrets.token_hex(10)}"
    seed = "\0".join((actor.session_id, actor.user_id, actor.request_id, text))
    return f"{Platform.AUDIFI.value}:{hashlib.blake2b(seed.encode(), digest_size=10).hexdigest()}"


def fan_message(
    actor: Actor, text: str, *, max_length: int, timestamp: int
) -> NormalizedChatMessage:
    """The normalized form of a fan's text, or 4006 when it is too long."""
    if len(text) > max_length:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"chat text is {len(text)} characters; the limit is {max_length}",
        )
    staff = actor.role in STAFF
    return NormalizedChatMessage(
        id=message_id(actor, text),
        platform=Platform.AUDIFI,
        username=actor.username,
        display_name=actor.username,
        text=text,
        badges=BADGES.get(actor.role),
        is_moderator=True if staff else None,
        timestamp=timestamp,
        user_id=actor.user_id,
    )


async def send_chat(services: Services, actor: Actor, message: ChatMessageIn) -> dict[str, Any]:
    async with services.redis_gate:
        return await _send_chat(services, actor, message)


async def _send_chat(services: Services, actor: Actor, message: ChatMessageIn) -> dict[str, Any]:
    session = await services.sessions.get(actor.session_id)
    require_open(session)
    if not session.chat_enabled:
        raise ProtocolError(ErrorCode.FORBIDDEN, "chat is turned off in this session")
    if session.chat_holders_only and actor.role not in SEES_GATED:
        raise ProtocolError(
            ErrorCode.TOKEN_GATE_FAILED,
            "chat is for token holders only in this session: connect as token_holder",
        )
    if await is_muted(services.bus, actor.session_id, actor.user_id):
        raise ProtocolError(ErrorCode.FORBIDDEN, "you are muted in this session's chat")
    normalized = fan_message(
        actor, message.text, max_length=services.settings.chat_max_length, timestamp=now_ms()
    )
    event_id = await services.bus.publish(
        actor.session_id,
        "chat",
        MessageType.CHAT_MESSAGE,
        normalized.wire(),
        dedupe_id=normalized.id,
    )
    if event_id is None:  # a retry of a message already published: the same answer again
        event_id = await services.bus.stream_id_of(actor.session_id, normalized.id)
    return {"id": normalized.id, "eventId": event_id}


ACTIONS = (Action(MessageType.CHAT_MESSAGE, send_chat),)
"""The client messages this module performs."""
