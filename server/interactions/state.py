"""``session.state``: the session, its viewer count and every interaction's part of it.

The payload opens with the seed's fields, where the seed puts them (``sessionId``, ``status``,
``viewerCount``, ``activePoll`` or null, ``chatEnabled``, ``reactionsEnabled``), so a client
written from the seed alone reads them there; the full ``session`` record and the parts'
fields (``polls``, ``tipTotals``, ...) follow.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from server.interactions.registry import StatePart
from server.interactions.services import Services

__all__ = ["SEED_POLL_FIELDS", "SessionState", "seed_poll"]

log = logging.getLogger("vstudio.server.interactions.state")


SEED_POLL_FIELDS = ("id", "question", "options", "results", "endsAt")
"""The seed's ``activePoll`` fields; ``endsAt`` is null for a poll without a duration."""


def seed_poll(poll: dict[str, Any] | None) -> dict[str, Any] | None:
    """A poll's wire dict with the seed's fields first (and always present), then the rest."""
    if poll is None:
        return None
    return {**{name: poll.get(name) for name in SEED_POLL_FIELDS}, **poll}


class SessionState:
    """Builds the ``session.state`` payload of a session (the hub caches and sends it)."""

    def __init__(
        self,
        services: Services,
        parts: Sequence[StatePart],
        viewers: Callable[[str], Awaitable[int]],
    ) -> None:
        self.services = services
        self.parts = tuple(parts)
        self.viewers = viewers

    async def __call__(self, session_id: str) -> dict[str, Any]:
        session = await self.services.sessions.get(session_id)
        state: dict[str, Any] = {
            "sessionId": session.id,
            "status": session.status.value,
            "viewerCount": await self.viewers(session_id),
            "activePoll": None,
            "chatEnabled": session.chat_enabled,
            "reactionsEnabled": session.reactions_enabled,
            "session": session.wire(),
        }
        for part in self.parts:
            try:
                state.update(await part(self.services, session_id))
            except Exception:
                log.exception("a session.state part failed", extra={"session": session_id})
        state["activePoll"] = seed_poll(state["activePoll"])
        return state
