"""The parts one server process is made of, and what every transport does the same way.

WebSocket and SSE connections both join a session through :meth:`Core.join` (presence with
the viewer limit, the ``session.join`` event, metrics, a log line) and leave through
:meth:`Core.leave`; both get their first frame from :meth:`Core.session_state`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from broker.models import ErrorCode, MessageType, ProtocolError, Role, Session, SessionStatus
from config import ServerSettings
from server.context import ServerContext
from server.fanout.hub import Hub
from server.fanout.subscriber import Subscriber
from server.identity.accounts import AccountStore
from server.identity.auth import Identity, TokenVerifier, bearer_token
from server.identity.tickets import TicketStore
from server.interactions.registry import STATE_PARTS
from server.interactions.sessions import SessionStore
from server.metrics import Metrics
from server.presence import Presence, SessionFull
from server.ratelimit import RedisWindow

__all__ = ["CORE", "Core", "highest_role"]

log = logging.getLogger("vstudio.server")

PRESENCE_EVENTS_UP_TO = 200
"""Above this many viewers a process sends at most one presence event per session per second."""


def highest_role(session: Session, who: Identity) -> Role:
    """The strongest role ``who`` holds in ``session`` (REST and SSE callers have no ticket)."""
    if session.status == SessionStatus.ENDED:
        raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {session.id} has ended")
    if who.guest:
        if not session.allow_guests or who.session_id not in (None, session.id):
            raise ProtocolError(ErrorCode.FORBIDDEN, "this guest token is not valid here")
        return Role.VIEWER
    if who.user_id == session.artist_id:
        return Role.ARTIST
    if who.user_id in session.producer_ids:
        return Role.PRODUCER
    return Role.VIEWER


@dataclass
class Core:
    """Everything a request handler of this process needs."""

    ctx: ServerContext
    store: SessionStore
    accounts: AccountStore
    tickets: TicketStore
    verifier: TokenVerifier
    presence: Presence
    hub: Hub
    metrics: Metrics
    windows: RedisWindow
    draining: bool = False
    _presence_due: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    _presence_timer: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _publishing: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def settings(self) -> ServerSettings:
        return self.ctx.settings

    async def identify(self, request: web.Request, *, token: str | None = None) -> Identity:
        """The caller's identity from ``Authorization: Bearer`` (or ``token``), else AuthError.

        Refusals are logged and counted by the HTTP error middleware, which sees them all.
        """
        return await self.verifier.verify(
            token or bearer_token(request.headers.get("Authorization"))
        )

    async def session_state(self, session_id: str) -> dict[str, Any]:
        """``session.state``: the session, the viewer count, and every module's part."""
        session = await self.store.get(session_id)
        state: dict[str, Any] = {
            "session": session.wire(),
            "viewerCount": await self.presence.count(session_id),
        }
        for part in STATE_PARTS:
            try:
                state.update(await part(self.ctx, session_id))
            except Exception:
                log.exception("a session.state part failed", extra={"session": session_id})
        return state

    async def join(self, sub: Subscriber) -> int:
        """Count ``sub`` as a viewer (4008 when full), announce it; the viewer count."""
        try:
            first, count = await self.presence.join(sub.who.session_id, sub.who.user_id)
        except SessionFull as exc:
            raise ProtocolError(ErrorCode.SESSION_FULL, str(exc)) from exc
        sub.counted = True
        self.metrics.connections_total.labels(sub.transport_name).inc()
        log.info(
            "connect",
            extra={
                "session": sub.who.session_id,
                "user": sub.who.user_id,
                "role": sub.who.role,
                "transport": sub.transport_name,
                "viewers": count,
            },
        )
        if first:
            self.announce(sub, MessageType.SESSION_JOIN, count)
        return count

    async def leave(self, sub: Subscriber) -> None:
        """Forget ``sub`` everywhere; announce the leave if it was the user's last connection."""
        self.hub.detach(sub)
        if not sub.counted or self.draining:  # a drain clears this process's presence in bulk
            return
        try:
            last, count = await self.presence.leave(sub.who.session_id, sub.who.user_id)
        except Exception:
            log.exception("presence leave failed", extra={"session": sub.who.session_id})
            return
        log.info(
            "disconnect",
            extra={
                "session": sub.who.session_id,
                "user": sub.who.user_id,
                "transport": sub.transport_name,
                "code": sub.close_code,
                "reason": sub.close_reason,
                "viewers": count,
            },
        )
        if last and not self.draining:
            self.announce(sub, MessageType.SESSION_LEAVE, count)

    def announce(self, sub: Subscriber, kind: MessageType, count: int) -> None:
        """Publish ``session.join``/``session.leave``; throttled in large sessions."""
        payload = {
            "userId": sub.who.user_id,
            "username": sub.who.username,
            "role": sub.who.role,
            "viewerCount": count,
        }
        session_id = sub.who.session_id
        if count <= PRESENCE_EVENTS_UP_TO:
            asyncio.get_running_loop().create_task(
                self._publish_presence(session_id, kind, payload)
            )
            return
        self._presence_due[session_id] = (kind, payload)
        if session_id not in self._presence_timer:
            self._presence_timer[session_id] = asyncio.get_running_loop().call_later(
                1.0, self._flush_presence, session_id
            )

    def _flush_presence(self, session_id: str) -> None:
        self._presence_timer.pop(session_id, None)
        due = self._presence_due.pop(session_id, None)
        if due is not None:
            self._spawn(self._publish_presence(session_id, *due))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def settle(self) -> None:
        """Wait for presence events still being published (before Redis is closed)."""
        for timer in self._presence_timer.values():
            timer.cancel()
        self._presence_timer.clear()
        if self._publishing:
            await asyncio.wait(list(self._publishing), timeout=5)

    async def _publish_presence(
        self, session_id: str, kind: MessageType, payload: dict[str, Any]
    ) -> None:
        try:
            await self.ctx.bus.publish(session_id, "events", kind, payload)
        except Exception:
            log.exception("presence event not published", extra={"session": session_id})

    async def drain(self, timeout: float = 10.0) -> None:
        """Tell every client to reconnect elsewhere (1012) and wait until they are gone."""
        self.draining = True
        self.hub.close_all(1012, "server restarting; reconnect")
        deadline = time.monotonic() + timeout
        while self.hub.subscribers() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.settle()


CORE = web.AppKey("core", Core)
