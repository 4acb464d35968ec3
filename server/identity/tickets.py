"""Single-use WebSocket tickets: a short-lived key in Redis that fixes user, session and role.

A browser cannot set headers on a WebSocket upgrade, so it trades its JWT for a ticket over
HTTPS first. Redeeming is one ``GETDEL``, so a ticket works once across every server process.
The tickets issued (and redeemed) in one loop turn go to Redis together, one pipeline per turn,
so a reconnect storm costs one round trip per turn instead of one per client.
:func:`grant_role` is the rule for which role a user may hold in a session (tickets use it);
:func:`highest_role` is the strongest one a caller without a ticket holds (SSE, REST).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from typing import Protocol, cast

import orjson
import redis.asyncio as aioredis

from broker import keys
from broker.connection import is_cluster
from broker.models import ErrorCode, ProtocolError, Role, Session, SessionStatus
from server.identity.auth import Identity
from server.identity.participant import Participant
from server.turns import TurnBatch

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


class TicketStore:
    """Issue and redeem tickets."""

    def __init__(self, client: aioredis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl
        self.sharded = is_cluster(client)
        self._stores: TurnBatch[tuple[str, bytes], object] = TurnBatch(self._store)
        self._takes: TurnBatch[str, bytes | None] = TurnBatch(self._take)

    async def issue(self, who: Identity, session_id: str, role: Role) -> str:
        """A fresh ticket valid for ``ttl`` seconds."""
        ticket_id = secrets.token_urlsafe(24)
        body = {"u": who.user_id, "n": who.username, "s": session_id, "r": str(role)}
        await self._stores.call((keys.ticket(ticket_id), orjson.dumps(body)))
        return ticket_id

    async def _store(self, tickets: list[tuple[str, bytes]]) -> Sequence[object]:
        if self.sharded:  # every ticket has its own slot: side by side, one trip's wait
            return await asyncio.gather(
                *(self.redis.set(key, body, ex=self.ttl) for key, body in tickets)
            )
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, body in tickets:
                pipe.set(key, body, ex=self.ttl)
            return list(await pipe.execute())

    async def _take(self, ticket_keys: list[str]) -> Sequence[bytes | None]:
        if self.sharded:
            taken = await asyncio.gather(*(self.redis.getdel(key) for key in ticket_keys))
            return cast(list[bytes | None], taken)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in ticket_keys:
                pipe.getdel(key)
            return list(await pipe.execute())

    async def redeem(self, ticket_id: str | None) -> Participant:
        """Who the ticket lets its connection be, consuming it; 4000 if unknown, used or expired."""
        if not ticket_id or len(ticket_id) > 128:
            raise ProtocolError(ErrorCode.INVALID_TICKET, "missing or malformed ticket")
        raw = await self._takes.call(keys.ticket(ticket_id))
        if raw is None:
            raise ProtocolError(
                ErrorCode.INVALID_TICKET, "ticket is unknown, expired or already used"
            )
        body = orjson.loads(raw)
        return Participant(
            session_id=body["s"], user_id=body["u"], username=body["n"], role=Role(body["r"])
        )
