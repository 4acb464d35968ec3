"""``session.state``: the session, its viewer count and every interaction's part of it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from server.interactions.registry import StatePart
from server.interactions.services import Services

__all__ = ["SessionState"]

log = logging.getLogger("vstudio.server.interactions.state")


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
            "session": session.wire(),
            "viewerCount": await self.viewers(session_id),
        }
        for part in self.parts:
            try:
                state.update(await part(self.services, session_id))
            except Exception:
                log.exception("a session.state part failed", extra={"session": session_id})
        return state
