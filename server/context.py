"""What every request handler of one server process shares: settings, the bus, sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from broker.bus import Bus
from broker.models import Session
from config import BrokerSettings, ServerSettings

__all__ = ["ServerContext", "SessionLookup"]


class SessionLookup(Protocol):
    """Reading sessions; raises ``ProtocolError`` 4001 for an unknown session."""

    async def get(self, session_id: str) -> Session: ...


@dataclass
class ServerContext:
    """One per server process.

    ``extras`` holds per-process state of the interaction modules (coalescers, throttles),
    keyed by module name, so the core does not need to know them.
    """

    settings: ServerSettings
    broker: BrokerSettings
    bus: Bus
    sessions: SessionLookup
    process_id: str
    extras: dict[str, Any] = field(default_factory=dict)
