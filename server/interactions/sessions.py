"""Sessions in Redis: create, read, list, start, end, update, with the lifecycle enforced;
and the client messages about the session itself (``session.end``, ``.update``, ``.join``).

A session is a hash whose fields are the wire fields, each holding its JSON value, so a field
changes alone (``HSET chatEnabled true``) and a Lua script can compare ``status`` without a
JSON library. Starting claims the artist's one live slot first (``SET NX``), then moves the
session; the claim is released if the move fails. Both steps are atomic, and the claim key is
the artist's, not the session's, so each step stays within one Cluster slot.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any, cast

import orjson
from redis.typing import EncodableT

from broker import keys
from broker.bus import Bus, RawHash
from broker.lifecycle import IllegalTransition, check_transition
from broker.models import (
    ErrorCode,
    MessageType,
    ProtocolError,
    Role,
    Session,
    SessionJoin,
    SessionStatus,
    SessionUpdate,
    now_ms,
)
from broker.scripts import Script
from server.interactions.registry import STAFF, Action, Actor
from server.interactions.services import Services
from server.turns import TurnShare

__all__ = [
    "ACTIONS",
    "PRODUCER_TOGGLES",
    "ArtistBusy",
    "SessionStore",
    "UnreadableSession",
    "new_session_id",
]

log = logging.getLogger("vstudio.server.interactions.sessions")

MOVE_SCRIPT = """
-- KEYS[1] session hash; ARGV[1] expected status JSON, ARGV[2] new status JSON,
-- ARGV[3] timestamp field, ARGV[4] now
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= ARGV[1] then return status end
redis.call('HSET', KEYS[1], 'status', ARGV[2], ARGV[3], ARGV[4])
return 'ok'
"""

RELEASE_SCRIPT = """
-- KEYS[1] artist live key; ARGV[1] session id: delete the claim only if it is this session's
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class UnreadableSession(Exception):
    """A stored record this version cannot read (another version's fields, a hand edit)."""

    def __init__(self, session_id: str, cause: Exception) -> None:
        self.session_id = session_id
        self.reason = str(cause).splitlines()[0]
        super().__init__(f"session {session_id} cannot be read: {self.reason}")


class ArtistBusy(ProtocolError):
    """The artist already has a live session (HTTP 409)."""


def new_session_id() -> str:
    """Short, URL-safe, and free of the characters the key hash tag forbids."""
    return secrets.token_hex(6)


def _encode(fields: dict[str, Any]) -> dict[EncodableT, EncodableT]:
    """Each wire field as its own JSON value (typed as redis-py's ``hset`` takes a mapping)."""
    return {name: orjson.dumps(value) for name, value in fields.items()}


def _legacy_tokens(tokens: list[Any]) -> list[dict[str, Any]] | None:
    """``requiredTokens`` stored as bare addresses, before the seed's shape: each address as
    ``{contractAddress, minBalance: 1}`` (holding any), anything unreadable dropped."""
    kept = [
        {"contractAddress": token, "minBalance": 1}
        for token in tokens
        if isinstance(token, str) and ADDRESS.fullmatch(token)
    ]
    return kept or None


class SessionStore:
    """Every process's view of sessions; all state lives in Redis."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.redis = bus.redis
        self._move = Script(self.redis, MOVE_SCRIPT)
        self._release = Script(self.redis, RELEASE_SCRIPT)
        self._shared_reads: TurnShare[str, Session] = TurnShare(self.get)

    async def create(self, session: Session) -> Session:
        """Store a new session (its id must be unused)."""
        key = keys.session(session.id)
        if not await self.redis.hsetnx(key, "id", orjson.dumps(session.id)):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"session {session.id} exists already")
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.hset(key, mapping=_encode(session.wire()))
            pipe.zadd(keys.sessions_index(), {session.id: session.created_at})
            pipe.zadd(keys.artist_sessions(session.artist_id), {session.id: session.created_at})
            await pipe.execute()
        return session

    async def count_open(self, artist_id: str) -> int:
        """How many of the artist's sessions have not ended (read from the artist's own index,
        which holds the sessions created since it exists; ended ones are dropped from it)."""
        index = keys.artist_sessions(artist_id)
        ids = cast(list[bytes], await self.redis.zrange(index, 0, -1))
        count = 0
        for raw_id in ids:
            try:
                session = await self.find(raw_id.decode())
            except UnreadableSession:
                continue
            if session is None or session.status == SessionStatus.ENDED:
                await self.redis.zrem(index, raw_id)
                continue
            count += 1
        return count

    async def find(self, session_id: str) -> Session | None:
        """The session, or ``None``."""
        try:
            key = keys.session(session_id)
        except ValueError:
            return None
        raw = cast(RawHash, await self.redis.hgetall(key))
        if not raw:
            return None
        try:
            fields = {name.decode(): orjson.loads(value) for name, value in raw.items()}
            legacy = fields.pop("startedAt", None)  # stored before the seed's name was used
            if legacy is not None:
                fields.setdefault("actualStart", legacy)
            tokens = fields.get("requiredTokens")
            if isinstance(tokens, list) and not all(isinstance(t, dict) for t in tokens):
                fields["requiredTokens"] = _legacy_tokens(tokens)
            return Session.model_validate(fields)
        except (ValueError, orjson.JSONDecodeError) as exc:  # ValidationError is a ValueError
            raise UnreadableSession(session_id, exc) from exc

    async def get(self, session_id: str) -> Session:
        """The session, or ``ProtocolError`` 4001."""
        try:
            session = await self.find(session_id)
        except UnreadableSession as exc:
            raise ProtocolError(
                ErrorCode.SESSION_NOT_FOUND, f"session {session_id} cannot be read: {exc.reason}"
            ) from exc
        if session is None:
            raise ProtocolError(ErrorCode.SESSION_NOT_FOUND, f"session {session_id} not found")
        return session

    async def get_shared(self, session_id: str) -> Session:
        """:meth:`get`, read once for every caller of one loop turn: a reconnect storm's ticket
        requests and connects ask for the same session thousands of times a second. The record
        is shared, so callers must not change it."""
        return await self._shared_reads.get(session_id)

    async def list(
        self, *, artist_id: str | None = None, status: SessionStatus | None = None, limit: int = 100
    ) -> list[Session]:
        """Newest first, filtered by artist and status."""
        ids = cast(list[bytes], await self.redis.zrevrange(keys.sessions_index(), 0, -1))
        found: list[Session] = []
        for raw_id in ids:
            try:
                session = await self.find(raw_id.decode())
            except UnreadableSession as exc:  # one bad record must not hide every other
                log.warning("skipping session %s: %s", exc.session_id, exc.reason)
                continue
            if session is None:
                continue
            if artist_id and session.artist_id != artist_id:
                continue
            if status and session.status != status:
                continue
            found.append(session)
            if len(found) >= limit:
                break
        return found

    async def start(self, session_id: str) -> Session:
        """``scheduled -> live``; 409-style :class:`ArtistBusy` if the artist is live elsewhere."""
        session = await self.get(session_id)
        self._check(session, SessionStatus.LIVE)
        live_key = keys.artist_live(session.artist_id)
        if not await self.redis.set(live_key, session_id, nx=True):
            other = cast(bytes | None, await self.redis.get(live_key))
            other_id = other.decode() if other else "?"
            if other_id != session_id:
                raise ArtistBusy(
                    ErrorCode.FORBIDDEN,
                    f"artist {session.artist_id} already has a live session ({other_id}); "
                    "end it before starting another",
                )
        moved = await self._transition(session_id, SessionStatus.SCHEDULED, SessionStatus.LIVE)
        if moved != "ok":
            await self._release(keys=[live_key], args=[session_id])
            self._refuse(session_id, moved, SessionStatus.LIVE)
        live = await self.get(session_id)
        await self.bus.publish(
            session_id,
            "events",
            MessageType.SESSION_UPDATE,
            {"status": live.status.value, "actualStart": live.actual_start},
        )
        return live

    async def end(self, session_id: str, *, ended_by: str) -> Session:
        """``scheduled|live -> ended``, release the artist's live slot, tell every client."""
        session = await self.get(session_id)
        self._check(session, SessionStatus.ENDED)
        moved = await self._transition(session_id, session.status, SessionStatus.ENDED)
        if moved != "ok":
            self._refuse(session_id, moved, SessionStatus.ENDED)
        await self._release(keys=[keys.artist_live(session.artist_id)], args=[session_id])
        ended = await self.get(session_id)
        await self.bus.publish(
            session_id,
            "events",
            MessageType.SESSION_END,
            {"endedBy": ended_by, "endedAt": ended.ended_at},
        )
        return ended

    async def update(self, session_id: str, change: SessionUpdate) -> Session:
        """Apply the given fields and tell every client with ``session.update``."""
        session = await self.get(session_id)
        if session.status == SessionStatus.ENDED:
            raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {session_id} has ended")
        fields = change.wire()
        if fields:
            await self.redis.hset(keys.session(session_id), mapping=_encode(fields))
            await self.bus.publish(session_id, "events", MessageType.SESSION_UPDATE, fields)
        return await self.get(session_id)

    async def _transition(
        self, session_id: str, current: SessionStatus, target: SessionStatus
    ) -> str:
        field = "actualStart" if target == SessionStatus.LIVE else "endedAt"
        result = await self._move(
            keys=[keys.session(session_id)],
            args=[orjson.dumps(current.value), orjson.dumps(target.value), field, now_ms()],
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    @staticmethod
    def _check(session: Session, target: SessionStatus) -> None:
        try:
            check_transition(session.status, target)
        except IllegalTransition as exc:
            code = (
                ErrorCode.SESSION_ENDED
                if session.status == SessionStatus.ENDED
                else ErrorCode.INVALID_MESSAGE
            )
            raise ProtocolError(code, f"session {session.id}: {exc}") from exc

    @staticmethod
    def _refuse(session_id: str, outcome: str, target: SessionStatus) -> None:
        if outcome == "missing":
            raise ProtocolError(ErrorCode.SESSION_NOT_FOUND, f"session {session_id} not found")
        if outcome == '"ended"':  # another request ended it first
            raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {session_id} has ended")
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"session {session_id} changed to {outcome} meanwhile; cannot become {target}",
        )


# --- client messages about the session -------------------------------------------------------

PRODUCER_TOGGLES = frozenset({"chat_enabled", "reactions_enabled", "chat_holders_only"})
"""What a producer may change; everything else of a session is the artist's."""


async def end_session(services: Services, actor: Actor, payload: Any) -> dict[str, Any]:
    """End the session for everyone; every process closes its clients with 4002."""
    ended = await services.sessions.end(actor.session_id, ended_by=actor.user_id)
    return {"session": ended.wire()}


async def update_session(
    services: Services, actor: Actor, payload: SessionUpdate
) -> dict[str, Any]:
    """Change the session; producers only toggle chat and reactions."""
    if actor.role == Role.PRODUCER:
        others = sorted(payload.model_fields_set - PRODUCER_TOGGLES)
        if others:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                "producers may only toggle chatEnabled, reactionsEnabled and chatHoldersOnly, "
                f"not {others}",
            )
    updated = await services.sessions.update(actor.session_id, payload)
    return {"session": updated.wire()}


async def join_session(services: Services, actor: Actor, payload: SessionJoin) -> dict[str, Any]:
    """A client's explicit join: it is already counted since it connected; say so.

    The seed's ``{sessionId, role, userId}`` must name this connection's session, role and
    user: a join cannot move a connection, raise its role or speak for someone else (4004).
    """
    stated = (
        ("sessionId", payload.session_id, actor.session_id),
        ("role", payload.role, actor.role),
        ("userId", payload.user_id, actor.user_id),
    )
    for name, given, held in stated:
        if given is not None and given != held:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"session.join: {name} {given!r} does not match this connection's {held!r} "
                "(fixed by its ticket)",
            )
    return {
        "ok": True,
        "sessionId": actor.session_id,
        "role": actor.role.value,
        "userId": actor.user_id,
    }


ACTIONS = (
    Action(MessageType.SESSION_END, end_session, frozenset({Role.ARTIST})),
    Action(MessageType.SESSION_UPDATE, update_session, STAFF),
    Action(MessageType.SESSION_JOIN, join_session),
)
"""The client messages this module performs."""
