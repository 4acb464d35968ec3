"""Client messages about the session itself: ``session.end``, ``session.update``, ``session.join``.

Registered in :mod:`server.interactions.registry`, so WebSocket frames and the REST routes
(``POST .../end``, ``PATCH .../{id}``) go through the same role checks and the same code.
"""

from __future__ import annotations

from typing import Any, cast

from broker.models import ErrorCode, MessageType, ProtocolError, Role, SessionUpdate
from server.context import ServerContext
from server.interactions.registry import STAFF, Actor, action
from server.interactions.sessions import SessionStore

__all__ = ["PRODUCER_TOGGLES", "end_session", "join_session", "update_session"]

PRODUCER_TOGGLES = frozenset({"chat_enabled", "reactions_enabled"})
"""What a producer may change; everything else of a session is the artist's."""


def _store(ctx: ServerContext) -> SessionStore:
    return cast(SessionStore, ctx.sessions)


@action(MessageType.SESSION_END, roles={Role.ARTIST})
async def end_session(ctx: ServerContext, actor: Actor, payload: Any) -> dict[str, Any]:
    """End the session for everyone; every process closes its clients with 4002."""
    ended = await _store(ctx).end(actor.session_id, ended_by=actor.user_id)
    return {"session": ended.wire()}


@action(MessageType.SESSION_UPDATE, roles=STAFF)
async def update_session(
    ctx: ServerContext, actor: Actor, payload: SessionUpdate
) -> dict[str, Any]:
    """Change the session; producers only toggle chat and reactions."""
    if actor.role == Role.PRODUCER:
        others = sorted(payload.model_fields_set - PRODUCER_TOGGLES)
        if others:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"producers may only toggle chatEnabled and reactionsEnabled, not {others}",
            )
    updated = await _store(ctx).update(actor.session_id, payload)
    return {"session": updated.wire()}


@action(MessageType.SESSION_JOIN)
async def join_session(ctx: ServerContext, actor: Actor, payload: Any) -> dict[str, Any]:
    """A client's explicit join: it is already counted since it connected; say so."""
    return {"ok": True, "sessionId": actor.session_id}
