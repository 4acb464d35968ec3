"""What every transport does the same way when a client comes and goes.

WebSocket and SSE connections both join a session through :meth:`Attendance.join` (presence
with the viewer limit, the ``session.join`` event, metrics, a log line) and leave through
:meth:`Attendance.leave`; :meth:`Attendance.drain` sends them all elsewhere on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, cast

from broker.bus import Bus
from broker.models import ErrorCode, MessageType, ProtocolError
from server.fanout.hub import Hub
from server.fanout.subscriber import Subscriber
from server.metrics import Metrics
from server.presence import ConnectionQuota, Presence, QuotaHold, SessionFull

__all__ = ["PRESENCE_EVENTS_UP_TO", "Attendance"]

log = logging.getLogger("vstudio.server.attendance")

PRESENCE_EVENTS_UP_TO = 200
"""Above this many viewers a process sends at most one presence event per session per second."""


class Attendance:
    """Who is connected to this process: presence, its announcements and the drain."""

    def __init__(
        self, bus: Bus, presence: Presence, hub: Hub, metrics: Metrics, quota: ConnectionQuota
    ) -> None:
        self.bus = bus
        self.presence = presence
        self.quota = quota
        self._holds: dict[Subscriber, QuotaHold] = {}
        self.hub = hub
        self.metrics = metrics
        self.draining = False
        self._presence_due: dict[str, tuple[MessageType, dict[str, Any]]] = {}
        self._presence_timer: dict[str, asyncio.TimerHandle] = {}
        self._publishing: set[asyncio.Task[None]] = set()

    async def join(self, sub: Subscriber, address: str | None = None) -> int:
        """Count ``sub`` as a viewer (4008 when full, or when its user or ``address`` has its
        maximum of connections), announce it; the viewer count."""
        who = sub.who
        hold = await self.quota.admit(who.user_id, address)
        try:
            first, count = await self.presence.join(who.session_id, who.user_id)
        except BaseException as exc:
            await self.quota.release(hold)
            if isinstance(exc, SessionFull):
                raise ProtocolError(ErrorCode.SESSION_FULL, str(exc)) from exc
            raise
        self._holds[sub] = hold
        sub.counted = True
        self.metrics.connections(sub.transport_name).inc()
        log.info(
            "%s connected",
            sub.transport_name,
            extra={
                "event": f"{sub.transport_name}_connection",
                "sessionId": who.session_id,
                "userId": who.user_id,
                "role": who.role,
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
        hold = self._holds.pop(sub, None)
        if hold is not None and not self.draining:  # a drain gives back every place at once
            try:
                await self.quota.release(hold)
            except Exception as exc:  # it expires with this process's refreshes
                log.warning("connection place not given back now: %s", exc)
        if not sub.counted:
            return
        self.metrics.connections(sub.transport_name).dec()  # each transport leaves once
        who = sub.who
        last, count = False, cast(int | None, None)
        if not self.draining:  # a drain clears this process's presence in bulk
            try:
                last, count = await self.presence.leave(who.session_id, who.user_id)
            except Exception:
                log.exception("presence leave failed", extra={"session": who.session_id})
        log.info(
            "%s disconnected",
            sub.transport_name,
            extra={
                "event": f"{sub.transport_name}_disconnect",
                "sessionId": who.session_id,
                "userId": who.user_id,
                "role": who.role,
                "transport": sub.transport_name,
                "code": sub.close_code,
                "reason": sub.close_reason,
                "viewers": count,
            },
        )
        if last and count is not None and not self.draining:
            self.announce(sub, MessageType.SESSION_LEAVE, count)

    def announce(self, sub: Subscriber, kind: MessageType, count: int) -> None:
        """Publish ``session.join``/``session.leave``; throttled in large sessions."""
        who = sub.who
        payload = {
            "userId": who.user_id,
            "username": who.username,
            "role": who.role,
            "viewerCount": count,
        }
        session_id = who.session_id
        if count <= PRESENCE_EVENTS_UP_TO:
            self._spawn(self._publish_presence(session_id, kind, payload))
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
            kind, payload = due
            self._spawn(self._publish_presence(session_id, kind, payload))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task kept until it ends (so :meth:`settle` can wait for it)."""
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
            await self.bus.publish(session_id, "events", kind, payload)
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
