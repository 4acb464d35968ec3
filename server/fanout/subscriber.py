"""What the hub writes to: a client connection, whatever transport carries it.

The hub never knows the WebSocket or SSE classes (as Centrifuge's hub writes through its
``Transport`` interface): it writes through :class:`Subscriber`, and a subscriber that also
reads the session's frame log (:class:`FrameLogReader`, the WebSocket) is written to by the
walker in one write per round. :class:`SubscriberState` holds the hub's bookkeeping for a
client, so each transport's class only adds how its bytes leave.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, TypeGuard, runtime_checkable

from server.fanout.frame import ZERO, Outgoing, StreamId
from server.fanout.framelog import FrameLog
from server.identity.participant import Participant
from server.metrics import Metrics

__all__ = ["FrameLogReader", "Subscriber", "SubscriberState", "reads_frame_log"]


@runtime_checkable
class Subscriber(Protocol):
    """One client connection of a session on this process."""

    transport_name: str
    who: Participant
    seen: StreamId
    """Stream ids up to this one reached the client through its replay."""
    fresh: bool
    """Joined with a replay up to ``seen``: live frames must leave those events out."""
    closed: bool
    counted: bool
    """Counted in the session's presence, so leaving must uncount it."""
    close_code: int | None
    close_reason: str

    def send(self, out: Outgoing) -> bool:
        """Queue ``out``; ``False`` when the client is too far behind and must be dropped."""
        ...

    def send_own(self, data: bytes, type_: str, payload: Any) -> bool:
        """Queue a frame of this client alone (``session.state``, replies, errors)."""
        ...

    def send_first(self, state: bytes, payload: Any, frames: list[Outgoing]) -> bool:
        """Queue ``session.state`` and the frames the client missed, together: one write where
        the transport can (a reconnect storm writes each client's first frames at once)."""
        ...

    def close(self, code: int, reason: str) -> None:
        """End the connection with ``code``; idempotent."""
        ...

    def drop(self) -> None:
        """Cut a client that fell behind; it will reconnect and resume by id."""
        ...


@runtime_checkable
class FrameLogReader(Subscriber, Protocol):
    """A subscriber the walker writes to straight from the session's :class:`FrameLog`."""

    transport: asyncio.Transport
    log: FrameLog | None
    """The session's frames, once the client is live; it needs those from ``next_seq``."""
    next_seq: int
    metrics: Metrics | None
    last_heard: float
    """``time.monotonic()`` when the client last sent anything (the heartbeat reads it)."""
    missed: int
    """Heartbeat rounds in a row without a sign of life."""

    def catch_up(self) -> None:
        """Write the session's frames this client has not had yet, in one write."""
        ...


_reads_log: dict[type, bool] = {}


def reads_frame_log(sub: Subscriber) -> TypeGuard[FrameLogReader]:
    """``isinstance(sub, FrameLogReader)``, decided once per class.

    A runtime Protocol check looks up every member on every call: 3% of the server's CPU in
    a reconnect storm of 10,000. The transports' classes declare all members in ``__slots__``
    and set them in ``__init__``, so the answer is the class's.
    """
    kind = type(sub)
    found = _reads_log.get(kind)
    if found is None:
        found = _reads_log[kind] = isinstance(sub, FrameLogReader)
    return found


class SubscriberState:
    """The hub's bookkeeping for one client; the transports' classes extend it."""

    __slots__ = (
        "close_code",
        "close_reason",
        "closed",
        "counted",
        "fresh",
        "seen",
        "who",
    )

    def __init__(self, who: Participant) -> None:
        self.who = who
        self.seen: StreamId = ZERO
        self.fresh = False
        self.closed = False
        self.counted = False
        self.close_code: int | None = None
        self.close_reason = ""
