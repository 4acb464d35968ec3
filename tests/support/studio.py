"""A real server context for interaction tests: real Bus, real SessionStore, real Redis.

``open_studio`` creates a live session owned by a fresh artist, builds the same
``ServerContext`` a server process builds, starts the interaction background work and
calls handlers through ``server.actions.perform`` after validating payloads with the wire
models, as every transport does.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from broker import Bus
from broker.bus import BusEvent
from broker.models import CLIENT_PAYLOADS, MessageType, Role, Session
from config import ServerSettings
from server.identity.participant import Participant
from server.interactions.catalog import ACTIONS, build_services
from server.interactions.registry import ActionTable, Actor
from server.interactions.services import Services
from server.interactions.sessions import SessionStore


@dataclass
class Studio:
    """One live session and the context to act in it."""

    services: Services
    actions: ActionTable
    store: SessionStore
    session: Session

    @property
    def session_id(self) -> str:
        return self.session.id

    def actor(
        self, role: Role = Role.VIEWER, user_id: str | None = None, request_id: str | None = None
    ) -> Actor:
        user = user_id or f"u-{uuid.uuid4().hex[:8]}"
        if role == Role.ARTIST:
            user = self.session.artist_id
        return Actor(
            Participant(self.session_id, user, f"name-{user}", role), request_id=request_id
        )

    async def do(self, actor: Actor, kind: MessageType, payload: dict[str, Any]) -> Any:
        """Validate ``payload`` like a transport does, then perform it."""
        model = CLIENT_PAYLOADS[kind].model_validate(payload)
        return await self.actions.perform(self.services, actor, kind, model)

    async def close(self) -> None:
        """Stop this context's background work, as a server process does on shutdown."""
        await self.services.stop()

    async def events(self, *types: str) -> list[BusEvent]:
        """The session's history, optionally only these types."""
        replay = await self.services.bus.replay(self.session_id, "0-0")
        return [event for event in replay.events if not types or event.type in types]


@contextlib.asynccontextmanager
async def open_studio(
    bus: Bus, *, start: bool = True, process_id: str = "p1", **settings: Any
) -> AsyncIterator[Studio]:
    """A live session and a started context; the background work is stopped afterwards."""
    store = SessionStore(bus)
    session = await store.create(
        Session(
            id=uuid.uuid4().hex[:12],
            artist_id=f"artist-{uuid.uuid4().hex[:8]}",
            title="Live",
            producer_ids=["producer-1"],
        )
    )
    session = await store.start(session.id)
    studio = await attach(bus, session, process_id=process_id, start=start, **settings)
    try:
        yield studio
    finally:
        if start:
            await studio.services.stop()


async def attach(
    bus: Bus, session: Session, *, process_id: str, start: bool = True, **settings: Any
) -> Studio:
    """Another process's context on the same session (for racing two processes)."""
    store = SessionStore(bus)
    services = build_services(ServerSettings(**settings), bus, store)
    if start:
        services.start()
    return Studio(services, ActionTable(ACTIONS), store, session)
