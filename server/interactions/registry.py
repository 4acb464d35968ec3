"""What clients may ask the server to do, independent of the transport that carried it.

A WebSocket frame, a REST call made by an SSE client and a call from the producer console all
end in :func:`perform`: the same role check, the same rate limits (applied by the transport
before this), the same handler, the same errors. Handlers are registered with :func:`action`
by the modules that own each interaction (sessions, polls, chat, reactions, tips, moderation).

``STATE_PARTS`` lets those modules add their part (polls, tip totals, recent chat...) to the
``session.state`` payload without the server core knowing about them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from broker.models import ErrorCode, MessageType, ProtocolError, Role

if TYPE_CHECKING:
    from server.context import ServerContext

__all__ = [
    "HANDLERS",
    "REST_ACTIONS",
    "STATE_PARTS",
    "Actor",
    "Handler",
    "RestAction",
    "StatePart",
    "action",
    "perform",
    "state_part",
]

Transport = Literal["ws", "sse", "rest", "internal"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting, in which session, with which role, over which transport."""

    user_id: str
    username: str
    role: Role
    session_id: str
    transport: Transport = "ws"
    connection_id: str | None = None
    request_id: str | None = None


Handler = Callable[["ServerContext", Actor, Any], Awaitable[dict[str, Any] | None]]
"""``(ctx, actor, validated payload) -> reply payload or None``; raises ProtocolError."""

StatePart = Callable[["ServerContext", str], Awaitable[dict[str, Any]]]
"""``(ctx, session_id) -> fields to merge into the session.state payload``."""


@dataclass(frozen=True, slots=True)
class Registered:
    handler: Handler
    roles: frozenset[Role]


HANDLERS: dict[MessageType, Registered] = {}
STATE_PARTS: list[StatePart] = []

ALL_ROLES = frozenset(Role)
STAFF = frozenset({Role.ARTIST, Role.PRODUCER})


def action(kind: MessageType, roles: Iterable[Role] = ALL_ROLES) -> Callable[[Handler], Handler]:
    """Register the handler of a client message type and the roles allowed to send it."""

    def register(handler: Handler) -> Handler:
        HANDLERS[kind] = Registered(handler, frozenset(roles))
        return handler

    return register


def state_part(part: StatePart) -> StatePart:
    """Register a contributor to ``session.state``."""
    STATE_PARTS.append(part)
    return part


async def perform(
    ctx: ServerContext, actor: Actor, kind: MessageType, payload: Any
) -> dict[str, Any] | None:
    """Run the handler of ``kind`` for ``actor``: 4004 for a wrong role, 4006 if unknown."""
    registered = HANDLERS.get(kind)
    if registered is None:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{kind} is not supported by this server")
    if actor.role not in registered.roles:
        allowed = ", ".join(sorted(registered.roles))
        raise ProtocolError(
            ErrorCode.FORBIDDEN, f"{kind} needs one of the roles {allowed}; you are {actor.role}"
        )
    return await registered.handler(ctx, actor, payload)


@dataclass(frozen=True, slots=True)
class RestAction:
    """A REST route under ``/v1/vstudio/sessions/{sessionId}`` that performs a client message.

    Path parameters (``{pollId}``, ``{messageId}``, ``{userId}``) are merged into the JSON body
    under the same camelCase names before the payload model validates it.
    """

    method: str
    path: str
    kind: MessageType
    summary: str


REST_ACTIONS: list[RestAction] = [
    RestAction("POST", "/polls", MessageType.POLL_CREATE, "Create a poll (artist, producer)"),
    RestAction("PATCH", "/polls/{pollId}", MessageType.POLL_UPDATE, "Update a poll"),
    RestAction("POST", "/polls/{pollId}/end", MessageType.POLL_END, "End a poll"),
    RestAction("POST", "/polls/{pollId}/votes", MessageType.POLL_VOTE, "Vote in a poll"),
    RestAction("POST", "/chat", MessageType.CHAT_MESSAGE, "Send a fan chat message"),
    RestAction(
        "POST", "/chat/{messageId}/delete", MessageType.CHAT_DELETE, "Delete a chat message"
    ),
    RestAction("POST", "/mutes", MessageType.CHAT_MUTE, "Mute or unmute a user's chat"),
    RestAction("POST", "/reactions", MessageType.REACTION_SEND, "Send a reaction"),
    RestAction("POST", "/tips", MessageType.TIP_SEND, "Send a tip (Idempotency-Key header)"),
]
"""REST equivalents of client messages, for SSE clients and scripts (same rules and codes).

``PATCH /v1/vstudio/sessions/{sessionId}`` (the session's own route) performs
``session.update`` and ``POST .../end`` performs ``session.end`` through the same handlers.
"""
