"""The token gate's part of a session: how many holders it has seen (issue 16).

The ticket endpoint records each user it grants ``token_holder`` (a set per session, so a
holder who reconnects counts once) and announces a new holder with ``session.update
{holderCount}``; ``session.state`` carries the count for sessions that require tokens.
"""

from __future__ import annotations

from typing import Any

from broker import keys
from broker.bus import Bus
from broker.models import MessageType
from server.interactions.services import Services

__all__ = ["gate_state", "record_holder"]


async def record_holder(bus: Bus, session_id: str, user_id: str) -> None:
    """Count ``user_id`` as a holder of the session; tell every client when it is new."""
    if await bus.redis.sadd(keys.session_holders(session_id), user_id):
        count = await bus.redis.scard(keys.session_holders(session_id))
        await bus.publish(session_id, "events", MessageType.SESSION_UPDATE, {"holderCount": count})


async def gate_state(services: Services, session_id: str) -> dict[str, Any]:
    """``holderCount`` for a session that requires tokens; nothing for the others."""
    session = await services.sessions.get(session_id)
    if not session.required_tokens:
        return {}
    return {"holderCount": int(await services.bus.redis.scard(keys.session_holders(session_id)))}
