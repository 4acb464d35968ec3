"""The WebSocket endpoint: ``/v1/vstudio/ws?ticket=T`` (and ``/v1/vstudio/ws/{sessionId}``).

The upgrade always succeeds; a bad ticket or session is then a close code a browser can read
(4000, 4001, 4002, 4008). Every client frame is validated, rate limited and performed through
:func:`server.interactions.registry.perform`; a frame with ``requestId`` gets exactly one
reply. Server events reach the client through the fan-out hub, which writes to this
connection's transport directly; replies take the same path, so frames never interleave.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from dataclasses import replace
from functools import partial

import orjson
from aiohttp import WSMessage, WSMsgType, web

from broker.models import (
    ErrorCode,
    MessageType,
    ProtocolError,
    SessionStatus,
    parse_client_frame,
)
from server.core import CORE, Core
from server.fanout.hub import WsClient
from server.interactions.registry import Actor, perform
from server.ratelimit import SlidingWindow, limits_for
from server.transport.framing import envelope, error_envelope, reply_envelope

__all__ = ["STREAM_ID", "routes"]

log = logging.getLogger("vstudio.server.transport.ws")
routes = web.RouteTableDef()

STREAM_ID = re.compile(r"\d{1,19}(-\d{1,19})?")
"""A stream id as Redis takes it: 64-bit parts; checked with ``fullmatch`` (no newline)."""
CLOSE_TIMEOUT = 3.0
"""Seconds to wait for a client's close frame before the connection is cut."""
CLOSE_REQUESTED = "vstudio: close requested"
"""The cancel message that wakes a handler waiting in ``receive()`` to close its connection."""
UNLIMITED = frozenset({MessageType.PING, MessageType.PONG, MessageType.SESSION_LEAVE})


def _request_id_of(raw: bytes | str, max_bytes: int) -> str | None:
    """The ``requestId`` of a frame that failed validation, so the error can carry it."""
    if len(raw) > max_bytes:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = data.get("requestId") if isinstance(data, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


async def _refuse(
    ws: web.WebSocketResponse, core: Core, error: ProtocolError
) -> web.WebSocketResponse:
    core.metrics.errors.labels(f"close_{int(error.code)}").inc()
    log.info("connection refused", extra={"code": int(error.code), "reason": error.message})
    await ws.close(code=int(error.code), message=error.message.encode()[:120])
    return ws


@routes.get("/v1/vstudio/ws")
@routes.get("/v1/vstudio/ws/{sessionId}")
async def websocket(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    settings = core.settings
    ws = web.WebSocketResponse(
        autoping=False,
        compress=False,
        timeout=CLOSE_TIMEOUT,
        max_msg_size=max(settings.max_message_bytes * 16, 65536),
    )
    await ws.prepare(request)
    if core.draining:
        await ws.close(code=1012, message=b"server restarting; reconnect")
        return ws
    try:
        ticket = await core.tickets.redeem(request.query.get("ticket"))
        path_session = request.match_info.get("sessionId")
        if path_session and path_session != ticket.session_id:
            raise ProtocolError(ErrorCode.INVALID_TICKET, "the ticket is for another session")
        cached = core.hub.cached_state(ticket.session_id)
        status = (
            cached["session"]["status"]
            if cached
            else (await core.store.get(ticket.session_id)).status
        )
        if status == SessionStatus.ENDED:
            raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {ticket.session_id} has ended")
        since = request.query.get("since")
        if since is not None and not STREAM_ID.fullmatch(since):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"since={since!r} is not an event id")
    except ProtocolError as exc:
        return await _refuse(ws, core, exc)

    transport = request.transport
    assert transport is not None
    handler = asyncio.current_task()
    assert handler is not None
    receiving = False

    def wake_to_close() -> None:
        """The hub closed the client: stop waiting for its frames and close from this task."""
        if receiving:
            handler.cancel(CLOSE_REQUESTED)

    client = WsClient(
        ticket.session_id,
        ticket.user_id,
        ticket.username,
        str(ticket.role),
        transport=transport,  # type: ignore[arg-type]
        buffer_limit=settings.send_buffer_limit,
        on_close=wake_to_close,
    )
    try:
        try:
            await core.hub.attach(client, since=since, first=partial(core.join, client))
        except ProtocolError as exc:
            return await _refuse(ws, core, exc)
        actor = Actor(
            user_id=ticket.user_id,
            username=ticket.username,
            role=ticket.role,
            session_id=ticket.session_id,
            transport="ws",
            connection_id=secrets.token_hex(6),
        )
        limiter = SlidingWindow()
        while not client.closed:
            receiving = True
            try:
                message = await ws.receive()
            except asyncio.CancelledError as exc:
                if exc.args != (CLOSE_REQUESTED,):
                    raise
                handler.uncancel()
                break
            finally:
                receiving = False
            if not await _serve_one(ws, core, client, actor, limiter, message):
                break
    finally:
        await core.leave(client)
        if not ws.closed:  # sends the close frame, waits CLOSE_TIMEOUT for the client's
            reason = client.close_reason.encode()[:120]
            await ws.close(code=client.close_code or 1000, message=reason)
    return ws


async def _serve_one(
    ws: web.WebSocketResponse,
    core: Core,
    client: WsClient,
    actor: Actor,
    limiter: SlidingWindow,
    message: WSMessage,
) -> bool:
    """Act on one thing the connection received; ``False`` when the connection ends."""
    client.last_heard = time.monotonic()
    if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
        core.metrics.messages_received.inc()
        return await _handle(ws, core, client, actor, limiter, message.data)
    if message.type == WSMsgType.PING:
        await ws.pong(message.data)
        return True
    if message.type == WSMsgType.PONG:
        return True
    if message.type == WSMsgType.ERROR:  # else CLOSE, CLOSING, CLOSED
        log.info("connection error: %s", message.data, extra={"session": actor.session_id})
    return False


async def _handle(
    ws: web.WebSocketResponse,
    core: Core,
    client: WsClient,
    actor: Actor,
    limiter: SlidingWindow,
    raw: str | bytes,
) -> bool:
    """Answer one client frame; ``False`` when the connection must end."""
    settings = core.settings
    try:
        frame = parse_client_frame(raw, settings.max_message_bytes)
    except ProtocolError as exc:
        core.metrics.errors.labels(f"error_{int(exc.code)}").inc()
        client.send_json(
            error_envelope(exc, _request_id_of(raw, settings.max_message_bytes)),
            "error",
            exc.payload(),
        )
        if exc.code == ErrorCode.MESSAGE_TOO_LARGE:
            client.close(int(exc.code), "message too large")
            return False
        return True
    request_id = frame.request_id
    if frame.type == MessageType.PING:
        client.send_json(envelope(MessageType.PONG, {}, request_id=request_id), "pong", {})
        return True
    if frame.type == MessageType.PONG:
        return True
    if frame.type == MessageType.SESSION_LEAVE:
        if request_id:
            client.send_json(reply_envelope(frame.type, request_id, None), frame.type, {})
        client.close(1000, "left")
        return False
    try:
        if frame.type not in UNLIMITED:
            wait = limiter.retry_after(limits_for(settings, frame.type), time.monotonic())
            if wait is not None:
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED, f"too many {frame.type} messages; slow down", wait
                )
        result = await perform(
            core.ctx, replace(actor, request_id=request_id), frame.type, frame.payload
        )
    except ProtocolError as exc:
        core.metrics.errors.labels(f"error_{int(exc.code)}").inc()
        client.send_json(error_envelope(exc, request_id), "error", exc.payload())
        return True
    except Exception:
        log.exception("handler failed", extra={"session": actor.session_id, "type": frame.type})
        core.metrics.errors.labels("internal").inc()
        body = {"code": 1011, "message": f"{frame.type} failed inside the server; try again"}
        client.send_json(envelope(MessageType.ERROR, body, request_id=request_id), "error", body)
        return True
    if request_id:
        client.send_json(reply_envelope(frame.type, request_id, result), frame.type, result)
    return True
