"""What the interaction handlers of one server process share, as typed attributes.

Built once when the app starts (:func:`server.interactions.catalog.build_services`) and handed
to every handler and ``session.state`` part, instead of per-module state found by name.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.bus import Bus
from config import ServerSettings

if TYPE_CHECKING:  # these modules' handlers take Services, so they are imported for types only
    from server.interactions.polls import PollRuntime
    from server.interactions.reactions import ReactionWindows
    from server.interactions.sessions import SessionStore
    from server.interactions.tips import TipLedger

__all__ = ["MAX_IN_FLIGHT", "Services"]

MAX_IN_FLIGHT = 48
"""A bound on the Redis calls the interaction handlers make at once in one process.

A vote storm puts thousands of handlers in flight at once. redis-py's default asyncio pool
refuses a call outright once its 100 connections are busy, and a blocking pool gives up after
its timeout; so interaction handlers queue on :attr:`Services.redis_gate` instead, and the
bound leaves connections in the pool for the fan-out, presence and the rest of the server.
"""


@dataclass(frozen=True, slots=True)
class Services:
    """One process's interaction state: the stores and the background work behind them."""

    settings: ServerSettings
    bus: Bus
    sessions: SessionStore
    polls: PollRuntime
    reactions: ReactionWindows
    tips: TipLedger
    redis_gate: asyncio.Semaphore

    def start(self) -> None:
        """Begin the background work: poll auto-end and results, reaction windows."""
        self.polls.start()
        self.reactions.start()

    async def stop(self) -> None:
        """Stop it, flushing pending poll results and reaction windows."""
        await self.reactions.stop()
        await self.polls.stop()
