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
from functools import partial

from aiohttp import web

from broker.models import ErrorCode, ProtocolError, SessionStatus
from server.core import CORE, highest_role
from server.fanout.hub import SseClient
from server.transport.sse_encoding import KEEPALIVE
from server.transport.ws import STREAM_ID

__all__ = ["routes"]

routes = web.RouteTableDef()
RETRY_MS = 2000
"""How long EventSource waits before reconnecting."""


@routes.get("/v1/vstudio/sse/{sessionId}")
async def sse(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    session_id = request.match_info["sessionId"]
    if core.draining:
        raise web.HTTPServiceUnavailable(reason="server restarting; reconnect")
    if "ticket" in request.query:
        ticket = await core.tickets.redeem(request.query["ticket"])
        if ticket.session_id != session_id:
            raise ProtocolError(ErrorCode.INVALID_TICKET, "the ticket is for another session")
        user_id, username, role = ticket.user_id, ticket.username, ticket.role
        session = await core.store.get(session_id)
    else:
        who = await core.identify(request, token=request.query.get("token"))
        session = await core.store.get(session_id)
        user_id, username, role = who.user_id, who.username, highest_role(session, who)
    if session.status == SessionStatus.ENDED:
        raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {session_id} has ended")
    since = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    if since is not None and not STREAM_ID.fullmatch(since):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"Last-Event-ID {since!r} is not an id")

    client = SseClient(
        session_id,
        user_id,
        username,
        str(role),
        buffer_limit=core.settings.send_buffer_limit,
        transport=request.transport,
    )
    try:
        await core.hub.attach(client, since=since, first=partial(core.join, client))
    except BaseException:
        await core.leave(client)
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
        keepalive = core.settings.sse_keepalive
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
        await core.leave(client)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response
