"""What clients may ask the server to do, independent of the transport that carried it.

A WebSocket frame, a REST call made by an SSE client and a call from the producer console all
end in :meth:`ActionTable.perform`: the same role check, the same rate limits (applied by the
transport before this), the same handler, the same errors. Each interaction module lists its
:class:`Action` values; :mod:`server.interactions.catalog` puts the lists together and the app
builds one table from them, so nothing registers itself by being imported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from broker.models import ErrorCode, MessageType, ProtocolError, Role
from server.identity.participant import Participant

if TYPE_CHECKING:  # the services hold the modules that import this one
    from server.interactions.services import Services

__all__ = [
    "ALL_ROLES",
    "SEES_GATED",
    "STAFF",
    "Action",
    "ActionTable",
    "Actor",
    "Handler",
    "Reply",
    "Starter",
    "StatePart",
    "Transport",
]

Transport = Literal["ws", "sse", "rest", "internal"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting (in which session, with which role), over which transport."""

    who: Participant
    transport: Transport = "ws"
    request_id: str | None = None

    @property
    def session_id(self) -> str:
        return self.who.session_id

    @property
    def user_id(self) -> str:
        return self.who.user_id

    @property
    def username(self) -> str:
        return self.who.username

    @property
    def role(self) -> Role:
        return self.who.role


Handler = Callable[["Services", Actor, Any], Awaitable[dict[str, Any] | None]]
"""``(services, actor, validated payload) -> reply payload or None``; raises ProtocolError."""

Reply = Callable[[dict[str, Any] | BaseException | None], None]
"""Given an action's reply payload, or the error it raised, once."""

Starter = Callable[["Services", Actor, Any, Reply], bool]
"""``(services, actor, payload, reply) -> started``: the action begun without a coroutine,
its outcome given to ``reply`` later; ``False`` (nothing done) when the handler must do it."""

StatePart = Callable[["Services", str], Awaitable[dict[str, Any]]]
"""``(services, session_id) -> fields to merge into the session.state payload``."""

ALL_ROLES = frozenset(Role)
STAFF = frozenset({Role.ARTIST, Role.PRODUCER})
SEES_GATED = frozenset({Role.ARTIST, Role.PRODUCER, Role.TOKEN_HOLDER})
"""Who sees and takes part in gated content (issue 16): token holders and the staff."""


@dataclass(frozen=True, slots=True)
class Action:
    """The handler of one client message type and the roles allowed to send it."""

    kind: MessageType
    handler: Handler
    roles: frozenset[Role] = ALL_ROLES
    start: Starter | None = None
    """The same action without a coroutine, for the frames a storm brings (votes)."""


class ActionTable:
    """Every client message this server performs, by type."""

    def __init__(self, actions: Iterable[Action]) -> None:
        self._actions: dict[MessageType, Action] = {}
        for entry in actions:
            if entry.kind in self._actions:
                raise ValueError(f"two handlers for {entry.kind}")
            self._actions[entry.kind] = entry

    def __contains__(self, kind: object) -> bool:
        return kind in self._actions

    async def perform(
        self, services: Services, actor: Actor, kind: MessageType, payload: Any
    ) -> dict[str, Any] | None:
        """Run the handler of ``kind`` for ``actor``: 4004 for a wrong role, 4006 if unknown."""
        entry = self._actions.get(kind)
        if entry is None:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, f"{kind} is not supported by this server"
            )
        _check_role(entry, actor)
        return await entry.handler(services, actor, payload)

    def start(
        self, services: Services, actor: Actor, kind: MessageType, payload: Any, reply: Reply
    ) -> bool:
        """Begin ``kind`` without a coroutine if it can be (:data:`Starter`); the same checks
        and errors as :meth:`perform`. ``False``: nothing was done, :meth:`perform` it."""
        entry = self._actions.get(kind)
        if entry is None or entry.start is None:
            return False
        _check_role(entry, actor)
        return entry.start(services, actor, payload, reply)


def _check_role(entry: Action, actor: Actor) -> None:
    if actor.role not in entry.roles:
        allowed = ", ".join(sorted(entry.roles))
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            f"{entry.kind} needs one of the roles {allowed}; you are {actor.role}",
        )
