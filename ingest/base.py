"""What every platform adapter produces and how the worker runtime drives it.

An adapter only speaks its platform's protocol and turns what it reads into
:data:`IngestItem` values; the runtime (batching, dedupe, publishing, reconnection with backoff,
heartbeat) is shared. Keeping protocol apart from I/O: parsing and mapping functions are pure
and tested without sockets; ``run`` only moves bytes and calls ``emit``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from broker.models import ChatDelete, NormalizedChatMessage, Platform, PlatformEvent

__all__ = ["Adapter", "AdapterFatal", "AdapterStatus", "Emit", "IngestItem"]

IngestItem = NormalizedChatMessage | ChatDelete | PlatformEvent
"""A chat message, a deletion (one message, or every message of a user), or a platform event."""

Emit = Callable[[IngestItem], None]


class AdapterFatal(RuntimeError):
    """A failure that retrying cannot fix (unknown channel, bad credentials, quota gone).

    The runtime stops with this message instead of reconnecting.
    """


@dataclass
class AdapterStatus:
    """What an adapter reports about its connection for the status line and heartbeat."""

    state: str = "starting"
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
