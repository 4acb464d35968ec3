"""Every interaction of the server, listed: the client messages, the ``session.state`` parts,
and the services they share.

The app builds its :class:`~server.interactions.registry.ActionTable` from :data:`ACTIONS` and
its ``session.state`` from :data:`STATE_PARTS`; a new interaction is added here, in plain
sight, not by being imported somewhere.
"""

from __future__ import annotations

import asyncio
from typing import Any

from broker.bus import Bus
from config import ServerSettings
from server.interactions import chat, gating, moderation, polls, reactions, sessions, tips
from server.interactions.registry import Action, StatePart
from server.interactions.services import MAX_IN_FLIGHT, Services

__all__ = ["ACTIONS", "STATE_PARTS", "build_services"]

ACTIONS: tuple[Action, ...] = (
    *sessions.ACTIONS,
    *polls.ACTIONS,
    *chat.ACTIONS,
    *reactions.ACTIONS,
    *tips.ACTIONS,
    *moderation.ACTIONS,
)


async def limits_state(services: Services, session_id: str) -> dict[str, Any]:
    """The choices a client offers come from the server's settings, not from the client."""
    settings = services.settings
    return {
        "allowedReactions": list(settings.allowed_reactions),
        "tipCurrencies": list(settings.tip_currencies),
        "chatMaxLength": settings.chat_max_length,
    }


STATE_PARTS: tuple[StatePart, ...] = (
    polls.polls_state,
    tips.tips_state,
    moderation.moderation_state,
    limits_state,
    gating.gate_state,
)


def build_services(settings: ServerSettings, bus: Bus, store: sessions.SessionStore) -> Services:
    """The services of one process (their background work starts with ``Services.start``)."""
    return Services(
        settings=settings,
        bus=bus,
        sessions=store,
        polls=polls.PollRuntime(polls.PollBook(bus, settings)),
        reactions=reactions.ReactionWindows(bus, settings),
        tips=tips.TipLedger(bus.redis),
        redis_gate=asyncio.Semaphore(MAX_IN_FLIGHT),
    )
