"""The WebSocket endpoint: ``/v1/vstudio/ws?ticket=T`` (and ``/v1/vstudio/ws/{sessionId}``).

A client that can set headers may send ``Authorization: Bearer <jwt>`` with ``?sessionId=&role=``
instead of a ticket (the seed's header method); the role is granted as for a ticket. The upgrade
always succeeds; a bad ticket or session is then a close code a browser can read (4000, 4001,
4002, 4004, 4005, 4008). Every client frame is validated, rate limited and performed through
:func:`server.interactions.registry.perform`; a frame with ``requestId`` gets exactly one
reply. Server events reach the client through the fan-out hub, which writes to this
connection's transport directly; replies take the same path, so frames never interleave.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from broker import keys
from broker.models import (
    ErrorCode,
    MessageType,
    ProtocolError,
    Role,
    SessionStatus,
    parse_client_frame,
)
from config import ServerSettings
from server.context import CONTEXT, ServerContext
from server.fanout.frame import Outgoing
from server.fanout.framelog import FrameLog
from server.fanout.subscriber import SubscriberState
from server.identity.auth import AuthError, bearer_token
from server.identity.participant import Participant
from server.interactions.ballots import Receipt
from server.interactions.registry import Actor
from server.metrics import Metrics
from server.ratelimit import OUTAGES, SlidingWindow, account_part, limits_for, outage
from server.transport.rfc6455 import (
    OP_BINARY,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    HandshakeError,
    handshake_reply,
)
from server.transport.wsconn import WsConnection
from server.wire import (
    STREAM_ID,
    envelope,
    error_envelope,
    reply_envelope,
    ws_text_frame,
)

__all__ = ["Opening", "WsClient", "max_message_size", "routes", "serve"]

log = logging.getLogger("vstudio.server.transport.ws")
routes = web.RouteTableDef()

CLOSE_TIMEOUT = 3.0
"""Seconds to wait for a client's close frame before the connection is cut."""
CLOSE_REQUESTED = "vstudio: close requested"
"""The cancel message that wakes a handler waiting in ``receive()`` to close its connection."""
UNLIMITED = frozenset({MessageType.PING, MessageType.PONG, MessageType.SESSION_LEAVE})


class WsClient(SubscriberState):
    """A WebSocket connection the fan-out writes to through its transport directly."""

    transport_name = "ws"
    __slots__ = (
        "answered",
        "answering",
        "buffer_limit",
        "handler",
        "last_heard",
        "log",
        "metrics",
        "missed",
        "next_seq",
        "receiving",
        "transport",
    )

    def __init__(
        self,
        who: Participant,
        *,
        transport: asyncio.Transport,
        buffer_limit: int,
        handler: asyncio.Task[Any] | None = None,
    ) -> None:
        super().__init__(who)
        self.transport = transport
        self.buffer_limit = buffer_limit
        self.handler = handler
        """The task serving the connection: :meth:`close` wakes it while it waits for a frame."""
        self.receiving = False
        """The handler waits in ``receive()`` (slots, not a closure: less memory per client)."""
        self.last_heard = time.monotonic()
        self.missed = 0
        self.log: FrameLog | None = None
        self.next_seq = 0
        self.metrics: Metrics | None = None
        self.answering = 0
        """Actions started for this connection and not answered yet (votes in a batch)."""
        self.answered: asyncio.Future[None] | None = None
        """Set when ``answering`` is back to 0, for a handler that waits for that."""

    def write(self, data: bytes) -> bool:
        transport = self.transport
        if self.closed or transport.is_closing():
            return True
        transport.write(data)
        return transport.get_write_buffer_size() <= self.buffer_limit

    def catch_up(self) -> None:
        """Write the session's frames this client has not had yet, in one write."""
        data = self._missing()
        if data:
            self.write(data)

    def _missing(self) -> bytes:
        """The session's frames this client has not had yet, counted as sent."""
        log, seq = self.log, self.next_seq
        if log is None or seq >= log.end:
            return b""
        self.next_seq = log.end
        if self.fresh:
            data, self.fresh = log.since_for(seq, self.seen)
        else:
            data = log.since(seq)
        if data and self.metrics is not None:
            self.metrics.messages_sent.inc(log.end - seq)
            self.metrics.fanout_writes.inc()
        return data

    def send(self, out: Outgoing) -> bool:
        return self.write(out.ws)

    def send_own(self, data: bytes, type_: str, payload: Any) -> bool:
        """A reply after the session's frames it must follow, in the same write (a vote's
        ack often finds a tally not yet written to this client: one system call for both)."""
        missing = self._missing()
        frame = ws_text_frame(data)
        return self.write(missing + frame if missing else frame)

    def send_first(self, state: bytes, payload: Any, frames: list[Outgoing]) -> bool:
        self.catch_up()
        return self.write(b"".join([ws_text_frame(state), *(out.ws for out in frames)]))

    def close(self, code: int, reason: str) -> None:
        """Stop sending and ask the connection's handler to close with ``code``.

        The handler's own task sends the close frame and waits for the client's (RFC 6455
        7.1.1), so the close comes after any reply it is writing and is waited for in one place
        (when aiohttp read the frames, closing from here also cut the connection at once, and a
        client that answered late saw 1006 instead of the code).
        """
        if self.closed:
            return
        self.catch_up()  # a session.end frame goes out before the close frame
        self.closed = True
        self.close_code, self.close_reason = code, reason
        if self.receiving and self.handler is not None:  # stop waiting, close from its task
            self.handler.cancel(CLOSE_REQUESTED)

    def drop(self) -> None:
        self.closed = True
        self.close_code, self.close_reason = 1008, "too slow"
        self.transport.abort()


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


async def _refuse(ws: WsConnection, ctx: ServerContext, error: ProtocolError) -> None:
    ctx.metrics.errors.labels(f"close_{int(error.code)}").inc()
    log.info("connection refused", extra={"code": int(error.code), "reason": error.message})
    await ws.close(int(error.code), error.message.encode()[:120], CLOSE_TIMEOUT)


def query_of(raw_path: str) -> dict[str, str]:
    """The query of a request target (the first value of each name).

    Read from the raw path rather than aiohttp's ``request.query``, which would stay cached on
    the request, which lives as long as the connection: a multidict, its pairs and the URL's
    parsed copy, about 700 bytes per idle client.
    """
    query: dict[str, str] = {}
    raw = raw_path.partition("?")[2].partition("#")[0]  # urlsplit would cache it
    for name, value in parse_qsl(raw, keep_blank_values=True):
        query.setdefault(name, value)
    return query


@dataclass(frozen=True, slots=True)
class Opening:
    """What the handler reads of an upgrade request, wherever it was parsed: by aiohttp, or
    by the guard when it is a connection's first request (:mod:`server.front`)."""

    raw_path: str
    path_session: str | None
    authorization: str | None
    remote: str | None

    @classmethod
    def of(cls, request: web.Request) -> Opening:
        return cls(
            request.raw_path,
            request.match_info.get("sessionId"),
            request.headers.get("Authorization"),
            request.remote,
        )


async def _opening(opening: Opening, ctx: ServerContext) -> tuple[Participant, str | None]:
    """Who connects, and the ``since`` it resumes from; a :class:`ProtocolError` refuses it.

    Apart from the handler so that what only the opening needs is not kept in its frame.
    """
    query = query_of(opening.raw_path)
    who = await _admit(opening, query, ctx)
    cached = ctx.hub.cached_state(who.session_id)
    status = cached["status"] if cached else (await ctx.sessions.get_shared(who.session_id)).status
    if status == SessionStatus.ENDED:
        raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {who.session_id} has ended")
    since = query.get("since")
    if since is not None and not STREAM_ID.fullmatch(since):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"since={since!r} is not an event id")
    return who, since


async def _admit(opening: Opening, query: dict[str, str], ctx: ServerContext) -> Participant:
    """Who the connection is, from its ticket or its ``Authorization`` header; else the error.

    One order for both methods, after a URL whose path and ``sessionId`` disagree (4006): the
    credentials (4000, so nobody learns which sessions exist without them), then the session
    the URL names (4001), then whether a ticket is for it (4000), then the session's state and
    the role (4002, 4004, 4005). A ticket wins over a header sent with it; a ticket's role is
    fixed, so ``role`` then changes nothing.
    """
    path_session = opening.path_session
    query_session = query.get("sessionId")
    if path_session and query_session and path_session != query_session:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"the path names session {path_session} and sessionId {query_session}; name one",
        )
    named = path_session or query_session
    header = opening.authorization
    if "ticket" in query or header is None:
        if "ticket" not in query:
            raise ProtocolError(
                ErrorCode.INVALID_TICKET,
                "missing ticket: connect with ?ticket=T, or send Authorization: Bearer <token> "
                "with ?sessionId=ID",
            )
        who = await ctx.tickets.redeem(query.get("ticket"))
        if named and named != who.session_id:
            await ctx.sessions.get(named)  # 4001 when the URL names no session at all
            raise ProtocolError(ErrorCode.INVALID_TICKET, "the ticket is for another session")
        return who
    try:
        identity = await ctx.verifier.verify(bearer_token(header))
    except AuthError as exc:
        raise ProtocolError(ErrorCode.INVALID_TICKET, f"token refused: {exc}") from exc
    if not named:
        raise ProtocolError(
            ErrorCode.SESSION_NOT_FOUND,
            "name the session: /v1/vstudio/ws/{sessionId} or ?sessionId=ID",
        )
    requested = query.get("role") or None
    if requested is not None and requested not in set(Role):
        roles = ", ".join(Role)
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"role {requested!r} is not one of {roles}")
    session = await ctx.sessions.get_shared(named)
    role = await ctx.grant(session, identity, requested)
    return Participant(
        session_id=session.id, user_id=identity.user_id, username=identity.username, role=role
    )


def max_message_size(settings: ServerSettings) -> int:
    """The longest message read at all; longer ones close the connection with 1009. Shorter
    ones over ``max_message_bytes`` are read, refused with 4007 and then closed."""
    return max(settings.max_message_bytes * 16, 65536)


def _upgrade(request: web.Request, max_size: int) -> WsConnection:
    """Answer the opening handshake and take the connection from aiohttp: every frame from
    now on goes to the returned :class:`WsConnection` (see :mod:`server.transport.wsconn`).

    A client sends nothing before the ``101`` (RFC 6455 section 4.1), so aiohttp holds no
    frame of it when the protocol changes.
    """
    try:
        reply = handshake_reply(request.method, request.headers)
    except HandshakeError as exc:
        if exc.status == 426:
            headers = {"Sec-WebSocket-Version": "13"}
            raise web.HTTPUpgradeRequired(text=exc.message, headers=headers) from exc
        raise web.HTTPBadRequest(text=exc.message) from exc
    transport = request.transport
    assert transport is not None  # a request being served has its connection
    connection = WsConnection(transport, max_size, previous=transport.get_protocol())
    transport.write(reply)
    transport.set_protocol(connection)
    return connection


@routes.get("/v1/vstudio/ws")
@routes.get("/v1/vstudio/ws/{sessionId}")
async def websocket(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    ws = _upgrade(request, max_message_size(ctx.settings))
    await serve(Opening.of(request), ctx, ws)
    # nothing to send: the connection is closed by now, so aiohttp's attempt ends at once as
    # a client gone (ConnectionError), which it takes quietly
    return web.StreamResponse(status=101)


async def serve(opening: Opening, ctx: ServerContext, ws: WsConnection) -> None:
    """The connection's life, from its credentials to its close; TCP is closed when it returns.

    Nothing of the opening is kept once the client is in (its ticket alone is 200 bytes per
    idle connection), and an error is logged here, as no middleware sees this connection.
    """
    try:
        admitted = await _admitted(opening, ctx, ws)
        del opening
        if admitted is not None:
            await _live(ctx, ws, *admitted)
    except OUTAGES as exc:  # Redis unreachable: the client retries later, as for a restart
        log.warning("Redis unreachable: %s", exc)
        if not ws.closed:
            await ws.close(1013, b"Redis unreachable; try again later", CLOSE_TIMEOUT)
    except Exception:
        log.exception("the WebSocket connection failed")
    finally:
        ws.transport.close()


async def _admitted(
    opening: Opening, ctx: ServerContext, ws: WsConnection
) -> tuple[Participant, str | None, str | None] | None:
    """Who the client is, its ``since`` and its address; ``None`` once it was refused."""
    if ctx.attendance.draining:
        await ws.close(1012, b"server restarting; reconnect", CLOSE_TIMEOUT)
        return None
    try:
        who, since = await _opening(opening, ctx)
    except ProtocolError as exc:
        await _refuse(ws, ctx, exc)
        return None
    return who, since, opening.remote


async def _live(
    ctx: ServerContext, ws: WsConnection, who: Participant, since: str | None, remote: str | None
) -> None:
    """Attach the client to its session, then read its messages until the connection ends."""
    settings = ctx.settings
    handler = asyncio.current_task()
    assert handler is not None
    client = WsClient(
        who, transport=ws.transport, buffer_limit=settings.send_buffer_limit, handler=handler
    )
    try:
        try:
            # not kept in a variable: this frame lives as long as the connection
            await ctx.hub.attach(
                client, since=since, first=partial(ctx.attendance.join, client, remote)
            )
        except ProtocolError as exc:
            await _refuse(ws, ctx, exc)
            return
        actor = Actor(who, transport="ws")
        limiter = SlidingWindow()
        while not client.closed:
            client.receiving = True
            try:
                opcode, data = await ws.receive()
            except asyncio.CancelledError as exc:
                if exc.args != (CLOSE_REQUESTED,):
                    raise
                handler.uncancel()
                break
            finally:
                client.receiving = False
            if not await _serve_one(ws, ctx, client, actor, limiter, opcode, data):
                break
    finally:
        await ctx.attendance.leave(client)
        if not ws.closed:  # sends the close frame, waits CLOSE_TIMEOUT for the client's
            reason = client.close_reason.encode()[:120]
            await ws.close(client.close_code or 1000, reason, CLOSE_TIMEOUT)


async def _serve_one(
    ws: WsConnection,
    ctx: ServerContext,
    client: WsClient,
    actor: Actor,
    limiter: SlidingWindow,
    opcode: int,
    data: bytes,
) -> bool:
    """Act on one thing the connection received; ``False`` when the connection ends."""
    client.last_heard = time.monotonic()
    if opcode == OP_TEXT or opcode == OP_BINARY:
        ctx.metrics.messages_received.inc()
        return await _handle(ws, ctx, client, actor, limiter, data)
    if opcode == OP_PING:
        ws.pong(data)
        return True
    if opcode == OP_PONG:
        return True
    if ws.error is not None:  # else the client closed, or is gone
        log.info("connection error: %s", ws.error, extra={"session": actor.session_id})
    return False


async def _handle(
    ws: WsConnection,
    ctx: ServerContext,
    client: WsClient,
    actor: Actor,
    limiter: SlidingWindow,
    raw: str | bytes,
) -> bool:
    """Answer one client frame; ``False`` when the connection must end."""
    if client.answering:  # a vote still waits for its batch: its reply goes first
        await _all_answered(client)
    settings = ctx.settings
    try:
        frame = parse_client_frame(raw, settings.max_message_bytes)
    except ProtocolError as exc:
        # a malformed frame still counts as a message: a flood of them is rate limited too
        wait = limiter.retry_after(limits_for(settings, None), time.monotonic())
        if wait is not None and exc.code != ErrorCode.MESSAGE_TOO_LARGE:
            exc = ProtocolError(ErrorCode.RATE_LIMITED, "too many messages; slow down", wait)
        ctx.metrics.errors.labels(f"error_{int(exc.code)}").inc()
        client.send_own(
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
        client.send_own(envelope(MessageType.PONG, {}, request_id=request_id), "pong", {})
        return True
    if frame.type == MessageType.PONG:
        return True
    if frame.type == MessageType.SESSION_LEAVE:
        if request_id:
            client.send_own(reply_envelope(frame.type, request_id, None), frame.type, {})
        client.close(1000, "left")
        return False
    if request_id is not None:
        actor = Actor(actor.who, actor.transport, request_id)
    outcome: dict[str, Any] | BaseException | None
    try:
        if frame.type not in UNLIMITED:
            rules = limits_for(settings, frame.type)
            wait = limiter.retry_after(rules, time.monotonic())
            shared = account_part(rules)
            if wait is None and shared:  # chat and reactions: the user's, over every socket
                wait = await ctx.windows.retry_after(
                    keys.account_rate(actor.session_id, actor.user_id), shared, time.time()
                )
            if wait is not None:
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED, f"too many {frame.type} messages; slow down", wait
                )
        then = partial(_answered, ctx, client, actor, frame.type)
        if ctx.actions.start(ctx.services, actor, frame.type, frame.payload, then):
            client.answering += 1  # a vote: answered from its batch, no await here
            return True
        outcome = await ctx.actions.perform(ctx.services, actor, frame.type, frame.payload)
    except Exception as exc:
        outcome = exc
    _reply(ctx, client, actor, frame.type, outcome)
    return True


async def _all_answered(client: WsClient) -> None:
    """Wait until the actions this connection started are answered, so replies keep order."""
    while client.answering > 0:
        client.answered = asyncio.get_running_loop().create_future()
        await client.answered


def _answered(
    ctx: ServerContext,
    client: WsClient,
    actor: Actor,
    kind: MessageType,
    outcome: dict[str, Any] | BaseException | None,
) -> None:
    """The outcome of an action started without an await: reply, and wake a waiting handler."""
    client.answering -= 1
    try:
        if not isinstance(outcome, asyncio.CancelledError):  # shutdown: no reply
            _reply(ctx, client, actor, kind, outcome)
    finally:
        waiting = client.answered
        if client.answering <= 0 and waiting is not None and not waiting.done():
            waiting.set_result(None)


def _reply(
    ctx: ServerContext,
    client: WsClient,
    actor: Actor,
    kind: MessageType,
    outcome: dict[str, Any] | BaseException | None,
) -> None:
    """Send an action's reply (with a ``requestId``) or its error frame."""
    request_id = actor.request_id
    if not isinstance(outcome, BaseException):
        if request_id:
            data = (
                outcome.reply(request_id)  # a vote's reply, spliced into pre-encoded bytes
                if isinstance(outcome, Receipt)
                else reply_envelope(kind, request_id, outcome)
            )
            client.send_own(data, kind, outcome)
        return
    if isinstance(outcome, ProtocolError):
        error = outcome
    elif isinstance(outcome, OUTAGES):  # retryable: 4009 with retryAfter, the connection stays
        log.warning("Redis unreachable: %s", outcome, extra={"session": actor.session_id})
        error = outage(ctx.settings, kind)
    elif isinstance(outcome, Exception):
        log.error(
            "handler failed",
            exc_info=outcome,
            extra={"session": actor.session_id, "type": kind},
        )
        ctx.metrics.errors.labels("internal").inc()
        body = {"code": 1011, "message": f"{kind} failed inside the server; try again"}
        client.send_own(envelope(MessageType.ERROR, body, request_id=request_id), "error", body)
        return
    else:
        raise outcome  # a BaseException (a cancel) is no reply
    ctx.metrics.errors.labels(f"error_{int(error.code)}").inc()
    client.send_own(error_envelope(error, request_id), "error", error.payload())
