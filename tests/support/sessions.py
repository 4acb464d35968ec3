"""A session record written as the server writes it, for workers run without a server."""

from __future__ import annotations

import asyncio

from broker import Bus, connect
from broker.models import Session, SessionStatus
from server.interactions.sessions import SessionStore

__all__ = ["create_session_record"]


def create_session_record(redis_url: str, session_id: str, status: SessionStatus) -> None:
    """Store session ``session_id`` with ``status`` (ingestion workers refuse a session that
    does not exist, or has ended)."""

    async def main() -> None:
        client = await connect(redis_url)
        try:
            session = Session(id=session_id, artist_id="artist", title="test", status=status)
            await SessionStore(Bus(client, history_size=1000)).create(session)
        finally:
            await client.aclose()

    asyncio.run(main())
