"""``GET /v1/vstudio/sse/{sessionId}``: the session's events as Server-Sent Events.

The same frames as the WebSocket, as ``event: <type>`` / ``id: <stream id>`` / ``data:
<payload>``. ``Last-Event-ID`` (the header EventSource sends when it reconnects, or
``?lastEventId=``) resumes without gaps inside the session's history; otherwise the stream
starts with ``session.state``. EventSource cannot set headers, so ``?ticket=`` or ``?token=``
authenticate too. Refusals happen before the stream starts, as JSON with an HTTP status
(EventSource does not retry those).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from broker.models import ErrorCode, MessageType, ProtocolError, SessionStatus
from server.context import CONTEXT
from server.fanout.frame import Outgoing
from server.fanout.subscriber import SubscriberState
from server.identity.participant import Participant
from server.wire import KEEPALIVE, STREAM_ID, sse_event

__all__ = ["SseClient", "routes"]

routes = web.RouteTableDef()
RETRY_MS = 2000
"""How long EventSource waits before reconnecting."""


class SseClient(SubscriberState):
    """An SSE stream: frames go to a bounded queue that the response handler drains."""

    transport_name = "sse"
    __slots__ = ("buffer_limit", "queue", "queued", "ready", "transport")

    def __init__(
        self,
        who: Participant,
        *,
        buffer_limit: int,
        transport: asyncio.Transport | None = None,
    ) -> None:
        super().__init__(who)
        self.transport = transport
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.buffer_limit = buffer_limit
        self.ready = asyncio.Event()

    def push(self, data: bytes) -> bool:
        if self.closed:
            return True
        self.queue.append(data)
        self.queued += len(data)
        self.ready.set()
        return self.queued <= self.buffer_limit

    def take(self) -> bytes:
        """Everything queued, as one chunk for the response."""
        chunk = b"".join(self.queue)
        self.queue.clear()
        self.queued = 0
        self.ready.clear()
        return chunk

    def send(self, out: Outgoing) -> bool:
        return self.push(out.sse)

    def send_own(self, data: bytes, type_: str, payload: Any) -> bool:
        event_id = None
        with contextlib.suppress(Exception):
            event_id = orjson.loads(data).get("id")
        return self.push(sse_event(orjson.dumps(payload), event=type_, event_id=event_id))

    def send_first(self, state: bytes, payload: Any, frames: list[Outgoing]) -> bool:
        keep = self.send_own(state, MessageType.SESSION_STATE, payload)
        for out in frames:
            keep = self.send(out) and keep
        return keep

    def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.close_code, self.close_reason = code, reason
        self.closed = True
        self.ready.set()

    def drop(self) -> None:
        """Cut a client that stopped reading: its handler may be stuck writing to it."""
        self.close(1008, "too slow")
        if self.transport is not None:
            self.transport.abort()


@routes.get("/v1/vstudio/sse/{sessionId}")
async def sse(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    session_id = request.match_info["sessionId"]
    if ctx.attendance.draining:
        raise web.HTTPServiceUnavailable(reason="server restarting; reconnect")
    if "ticket" in request.query:
        ticket = await ctx.tickets.redeem(request.query["ticket"])
        if ticket.session_id != session_id:
            raise ProtocolError(ErrorCode.INVALID_TICKET, "the ticket is for another session")
        participant = ticket
        session = await ctx.sessions.get(session_id)
    else:
        who = await ctx.identify(request, token=request.query.get("token"))
        session = await ctx.sessions.get(session_id)
        role = await ctx.role_of(session, who)
        participant = Participant(session_id, who.user_id, who.username, role)
    if session.status == SessionStatus.ENDED:
        raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {session_id} has ended")
    since = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    if since is not None and not STREAM_ID.fullmatch(since):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"Last-Event-ID {since!r} is not an id")

    client = SseClient(
        participant,
        buffer_limit=ctx.settings.send_buffer_limit,
        transport=request.transport,
    )
    try:
        joined = partial(ctx.attendance.join, client, request.remote)
        await ctx.hub.attach(client, since=since, first=joined)
    except BaseException:
        await ctx.attendance.leave(client)
        raise
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        keepalive = ctx.settings.sse_keepalive
        while True:
            if not client.queue and not client.closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.ready.wait(), keepalive)
            chunk = client.take()
            if chunk:
                await response.write(chunk)
            elif not client.closed:
                await response.write(KEEPALIVE)
            if client.closed:
                break
    except ConnectionResetError:
        pass
    finally:
        await ctx.attendance.leave(client)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response
