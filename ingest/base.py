"""What every platform adapter produces and how the worker runtime drives it.

An adapter only speaks its platform's protocol and turns what it reads into
:data:`IngestItem` values; the runtime (batching, dedupe, publishing, reconnection with backoff,
heartbeat) is shared. Keeping protocol apart from I/O: parsing and mapping functions are pure
and tested without sockets; ``run`` only moves bytes and calls ``emit``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from broker.models import ChatDelete, EventKind, NormalizedChatMessage, Platform, PlatformEvent

__all__ = [
    "Adapter",
    "AdapterFatal",
    "AdapterState",
    "AdapterStatus",
    "Emit",
    "EventKind",
    "IngestItem",
    "TargetNotFound",
    "check_cancelled",
]

IngestItem = NormalizedChatMessage | ChatDelete | PlatformEvent
"""A chat message, a deletion (one message, or every message of a user), or a platform event."""

Emit = Callable[[IngestItem], None]


class AdapterFatal(RuntimeError):
    """A failure that retrying cannot fix (unknown channel, bad credentials, quota gone).

    The runtime stops with this message instead of reconnecting.
    """


class TargetNotFound(AdapterFatal):
    """What the adapter was pointed at (a channel, a video) does not exist: exit 4, as for a
    session that does not exist, so a script can tell a typo from an outage."""


class AdapterState(StrEnum):
    """Where a worker's connection stands, as the status line and the heartbeat show it.

    Adapters set the connection states; the runtime sets ``connecting`` before each try,
    ``reconnecting`` before the next, and the worker's own ``starting``, ``stopping``,
    ``stopped`` and ``failed``. The values are the strings heartbeat records carry.
    """

    STARTING = "starting"
    RESOLVING = "resolving"
    """Looking up what to read (YouTube: the live chat of a video or channel)."""
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    BACKING_OFF = "backing off"
    """The platform asked to slow down; the adapter waits before its next request."""
    RATE_LIMITED = "rate limited"
    DISCONNECTED = "disconnected"
    ENDED = "ended"
    """The live stream ended."""
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass
class AdapterStatus:
    """What an adapter reports about its connection for the status line and heartbeat."""

    state: AdapterState = AdapterState.STARTING
    detail: str = ""


class Adapter(Protocol):
    """One platform connection. ``run`` returns or raises when the connection ends.

    Any exception other than :class:`AdapterFatal` (or a clean return) makes the runtime
    reconnect with exponential backoff and jitter; cancellation stops it.
    """

    platform: Platform
    target: str
    status: AdapterStatus

    async def run(self, emit: Emit) -> None: ...


def check_cancelled() -> None:
    """Raise ``CancelledError`` if this task was asked to stop.

    A library that swallows a cancel (redis-py can, mid-command, on Python 3.11) leaves the
    request counted in ``Task.cancelling()``; a waiting loop that checks it still stops
    instead of spinning on after its owner gave up on it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
