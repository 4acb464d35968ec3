"""Single-use WebSocket tickets: signed and short-lived, they fix user, session and role.

A browser cannot set headers on a WebSocket upgrade, so it trades its JWT for a ticket over
HTTPS first. A ticket is signed, so issuing one costs no Redis command; redeeming claims it
with one ``SET NX``, so it works once across every server process, and the claims of one loop
turn go to Redis together (a reconnect storm costs one round trip per turn, not per client).
:func:`grant_role` is the rule for which role a user may hold in a session (tickets use it);
:func:`highest_role` is the strongest one a caller without a ticket holds (SSE, REST).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Sequence
from typing import Protocol, cast

import orjson
import redis.asyncio as aioredis

from broker import keys
from broker.connection import is_cluster
from broker.models import ErrorCode, ProtocolError, Role, Session, SessionStatus
from server.identity.auth import Identity
from server.identity.participant import Participant
from server.turns import TurnBatch, TurnShare

__all__ = ["HolderCheck", "TicketStore", "grant_role", "highest_role"]


class HolderCheck(Protocol):
    """The token gate's answer for a wallet (``server.tokengate.abi.Verdict`` is one)."""

    @property
    def passed(self) -> bool: ...

    @property
    def reason(self) -> str: ...


def grant_role(
    session: Session,
    who: Identity,
    requested: Role | str | None,
    holder: HolderCheck | None = None,
) -> Role:
    """The role ``who`` may have in ``session``, or ``ProtocolError`` 4004/4005/4002.

    ``artist`` is the session's owner, ``producer`` one of its ``producerIds``, ``viewer`` any
    authenticated user (guests only where the session allows them). ``token_holder`` needs
    ``holder``, the token gate's check of the user's linked wallet, to have passed: else 4005
    with the gate's reason (no check at all is a refusal too).
    """
    role = Role(requested) if requested else Role.VIEWER
    if session.status == SessionStatus.ENDED:
        raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {session.id} has ended")
    if who.guest:
        if who.session_id not in (None, session.id):
            raise ProtocolError(ErrorCode.FORBIDDEN, "this guest token is for another session")
        if not session.allow_guests:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"session {session.id} does not allow guests")
        if role != Role.VIEWER:
            raise ProtocolError(ErrorCode.FORBIDDEN, "guests can only be viewers")
        return role
    if role == Role.ARTIST and who.user_id != session.artist_id:
        raise ProtocolError(
            ErrorCode.FORBIDDEN, f"only the session's artist ({session.artist_id}) can be artist"
        )
    if role == Role.PRODUCER and who.user_id not in session.producer_ids:
        raise ProtocolError(ErrorCode.FORBIDDEN, "you are not a producer of this session")
    if role == Role.TOKEN_HOLDER:
        if holder is None:
            raise ProtocolError(
                ErrorCode.TOKEN_GATE_FAILED, "token_holder needs a wallet checked by the token gate"
            )
        if not holder.passed:
            raise ProtocolError(ErrorCode.TOKEN_GATE_FAILED, holder.reason)
    return role


def highest_role(session: Session, who: Identity) -> Role:
    """The strongest role ``who`` holds in ``session`` (REST and SSE callers have no ticket)."""
    if session.status == SessionStatus.ENDED:
        raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {session.id} has ended")
    if who.guest:
        if not session.allow_guests or who.session_id not in (None, session.id):
            raise ProtocolError(ErrorCode.FORBIDDEN, "this guest token is not valid here")
        return Role.VIEWER
    if who.user_id == session.artist_id:
        return Role.ARTIST
    if who.user_id in session.producer_ids:
        return Role.PRODUCER
    return Role.VIEWER


MAX_TICKET = 2048
"""Longest ticket accepted (a signed ticket carries user, name, session and role)."""
KEY_RECHECK = 10.0
"""Seconds a process trusts its copy of the signing key before reading it again, so a key that
Redis lost (and a process made anew) is picked up by every process within that."""
KEY_RECHECK_MIN = 1.0
"""Seconds between two reads of the key asked for by tickets it did not sign: a key made anew
is still picked up at once, but a flood of forged tickets is not a flood of Redis reads."""
USED_MARGIN_MS = 60_000
"""A used ticket's mark outlives its expiry by this, so a process whose clock is behind by
less than that still finds it."""


class TicketStore:
    """Issue and redeem tickets: signed, short-lived and single-use.

    A ticket is its body (user, name, session, role, expiry, a random id) and an HMAC-SHA256
    of it under a key kept in Redis, so issuing one costs no Redis command. Redeeming checks
    the signature and the expiry, then claims the ticket's id with one ``SET NX``: the first
    redemption on any process wins, every later one finds the mark (4000). The marks of one
    loop turn go to Redis together, one pipeline per turn.
    """

    def __init__(self, client: aioredis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl
        self.sharded = is_cluster(client)
        self._key: bytes | None = None
        self._key_read_at = 0.0
        self._key_forced_at = -KEY_RECHECK_MIN
        self._key_reads: TurnShare[None, bytes] = TurnShare(self._read_key)
        self._claims: TurnBatch[tuple[str, int], object] = TurnBatch(self._claim)

    async def _read_key(self, _: None) -> bytes:
        """The signing key in Redis, made now if there is none (same key: one slot)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.ticket_key(), secrets.token_bytes(32), nx=True)
            pipe.get(keys.ticket_key())
            _, key = await pipe.execute()
        return cast(bytes, key)

    async def _signing_key(self, *, again: bool = False) -> bytes:
        now = time.monotonic()
        if again:
            if now - self._key_forced_at < KEY_RECHECK_MIN:
                return self._key or await self._signing_key()
            self._key_forced_at = now
        if self._key is None or again or now - self._key_read_at > KEY_RECHECK:
            self._key, self._key_read_at = await self._key_reads.get(None), now
        return self._key

    async def issue(self, who: Identity, session_id: str, role: Role) -> str:
        """A fresh ticket valid for ``ttl`` seconds."""
        # a list, not an object, and no name when it is the user id: a connection keeps its
        # URL, ticket and all, so every byte of the ticket is a byte per idle connection
        name = who.username if who.username != who.user_id else None
        expires = int(time.time() * 1000) + self.ttl * 1000
        body = [who.user_id, name, session_id, str(role), expires, secrets.token_urlsafe(9)]
        payload = urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=")
        return f"{payload.decode()}.{_sign(await self._signing_key(), payload).decode()}"

    async def _claim(self, marks: list[tuple[str, int]]) -> Sequence[object]:
        if self.sharded:  # every ticket has its own slot: side by side, one trip's wait
            return await asyncio.gather(
                *(self.redis.set(key, 1, nx=True, px=ms) for key, ms in marks)
            )
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, ms in marks:
                pipe.set(key, 1, nx=True, px=ms)
            return list(await pipe.execute())

    async def redeem(self, ticket: str | None) -> Participant:
        """Who the ticket lets its connection be, consuming it; 4000 if unknown, used or expired."""
        if not ticket or len(ticket) > MAX_TICKET:
            raise ProtocolError(ErrorCode.INVALID_TICKET, "missing or malformed ticket")
        payload, _, text = ticket.partition(".")
        signed, mac = payload.encode(), text.encode()
        if not hmac.compare_digest(_sign(await self._signing_key(), signed), mac):
            # a key made anew since this process read it signs newer tickets
            if not hmac.compare_digest(_sign(await self._signing_key(again=True), signed), mac):
                raise ProtocolError(ErrorCode.INVALID_TICKET, "ticket is unknown")
        user, name, session_id, role, expires, ticket_id = orjson.loads(
            urlsafe_b64decode(signed + b"=" * (-len(signed) % 4))
        )
        left = int(expires) - int(time.time() * 1000)
        if left <= 0:
            raise ProtocolError(ErrorCode.INVALID_TICKET, "ticket expired")
        if not await self._claims.call((keys.ticket(str(ticket_id)), left + USED_MARGIN_MS)):
            raise ProtocolError(ErrorCode.INVALID_TICKET, "ticket was already used")
        return Participant(
            session_id=session_id,
            user_id=user,
            username=user if name is None else name,
            role=Role(role),
        )


def _sign(key: bytes, payload: bytes) -> bytes:
    """HMAC-SHA256 truncated to 128 bits (RFC 2104 section 5 allows half the hash or more)."""
    return urlsafe_b64encode(hmac.digest(key, payload, "sha256")[:16]).rstrip(b"=")
