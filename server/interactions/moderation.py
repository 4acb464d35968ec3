"""Moderation by the artist and producers: delete chat messages, mute and unmute fans.

A deletion is published as ``chat.delete`` (every client removes the message) and the message
is removed from the session's history with ``XDEL``, so a client that resumes or replays never
sees it again. A deletion by ``username`` and ``platform`` removes every message of that user
on that platform. Mutes are a per-session set in Redis that the chat handler consults for fans
and the bus's publish script consults for platform users (``twitch:4242``: their ingested
messages are dropped before they reach the stream), with who each muted id is (platform,
name) beside it; each change is announced with ``chat.mute``. Chat and reaction toggles are
``session.update`` (server core); the chat and reaction handlers enforce them.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from broker import keys
from broker.bus import Bus, StreamEntries
from broker.models import ChatDelete, ChatMute, MessageType
from server.interactions.registry import STAFF, Action, Actor
from server.interactions.services import Services

__all__ = ["delete_from_history", "is_muted", "muted_names", "muted_users"]

SCAN_PAGE = 1000


async def is_muted(bus: Bus, session_id: str, user_id: str) -> bool:
    """Whether ``user_id``'s fan chat is refused in this session."""
    return bool(await bus.redis.sismember(keys.muted(session_id), user_id))


async def muted_users(bus: Bus, session_id: str) -> list[str]:
    members = cast(set[bytes], await bus.redis.smembers(keys.muted(session_id)))
    return sorted(member.decode() for member in members)


async def muted_names(bus: Bus, session_id: str) -> list[dict[str, str]]:
    """Every muted id with who it is: ``{userId, platform?, username?}``, sorted by id."""
    ids = await muted_users(bus, session_id)
    if not ids:
        return []
    names = cast(list[bytes | None], await bus.redis.hmget(keys.muted_names(session_id), ids))
    described = []
    for user_id, raw in zip(ids, names, strict=True):
        known = orjson.loads(raw) if raw else {}
        described.append({"userId": user_id, **known})
    return described


def matches(request: ChatDelete, payload: dict[str, Any]) -> bool:
    """Whether a stored ``chat.message`` payload is one the deletion names."""
    if request.message_id is not None:
        return payload.get("id") == request.message_id
    platform = request.platform.value if request.platform else None
    if payload.get("platform") != platform:
        return False
    if request.user_id is not None:
        return payload.get("userId") == request.user_id
    return payload.get("username") == request.username


async def delete_from_history(bus: Bus, session_id: str, request: ChatDelete) -> int:
    """Remove the named message(s) from the session's stream; how many were removed.

    A single message is found through the dedupe index (message id -> stream id); a user's
    messages are found by reading the stream, which is capped, so the scan is bounded.
    """
    stream = keys.stream(session_id)
    if request.message_id is not None:
        stream_id = await bus.stream_id_of(session_id, request.message_id)
        if stream_id is not None:
            return await bus.delete_events(session_id, [stream_id])
    doomed: list[bytes] = []
    cursor = "-"
    while True:
        page = cast(
            StreamEntries, await bus.redis.xrange(stream, min=cursor, max="+", count=SCAN_PAGE)
        )
        for entry_id, fields in page:
            if fields.get(b"k") != b"chat":
                continue
            event = orjson.loads(fields[b"e"])
            if event.get("type") == MessageType.CHAT_MESSAGE and matches(
                request, event.get("payload", {})
            ):
                doomed.append(entry_id)
        if len(page) < SCAN_PAGE:
            break
        cursor = "(" + page[-1][0].decode()
    return await bus.delete_events(session_id, [entry.decode() for entry in doomed])


async def delete_message(services: Services, actor: Actor, request: ChatDelete) -> dict[str, Any]:
    await services.sessions.get(actor.session_id)
    removed = await delete_from_history(services.bus, actor.session_id, request)
    payload = {**request.wire(), "deletedBy": actor.username}
    await services.bus.publish(actor.session_id, "chat", MessageType.CHAT_DELETE, payload)
    return {**request.wire(), "removedFromHistory": removed}


async def mute_user(services: Services, actor: Actor, request: ChatMute) -> dict[str, Any]:
    await services.sessions.get(actor.session_id)
    key = keys.muted(actor.session_id)
    names = keys.muted_names(actor.session_id)
    who = {k: v for k, v in request.wire().items() if k in ("platform", "username")}
    async with services.bus.redis.pipeline(transaction=True) as pipe:
        if request.muted:
            pipe.sadd(key, request.user_id)
            if who:
                pipe.hset(names, request.user_id, orjson.dumps(who))
        else:
            pipe.srem(key, request.user_id)
            pipe.hdel(names, request.user_id)
        await pipe.execute()
    payload = {**request.wire(), "by": actor.username}
    await services.bus.publish(actor.session_id, "events", MessageType.CHAT_MUTE, payload)
    return request.wire()


async def moderation_state(services: Services, session_id: str) -> dict[str, Any]:
    """``mutedUsers``: muted ids (a fan's chat is refused, a platform user's messages are not
    published), so a page can tell its user; ``mutedNames``: the same with platform and name,
    for the producers."""
    return {
        "mutedUsers": await muted_users(services.bus, session_id),
        "mutedNames": await muted_names(services.bus, session_id),
    }


ACTIONS = (
    Action(MessageType.CHAT_DELETE, delete_message, STAFF),
    Action(MessageType.CHAT_MUTE, mute_user, STAFF),
)
"""The client messages this module performs."""
