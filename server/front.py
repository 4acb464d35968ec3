"""WebSocket upgrades and tickets that are a connection's first request, served without aiohttp.

A browser opens every WebSocket on a connection of its own, so for nearly every viewer the
upgrade is the first request on its connection, and the guard (:mod:`server.guard`) has read
its head before anything else has. When that head is a valid upgrade to ``/v1/vstudio/ws``,
:class:`FrontDoor` answers it and gives the connection to a
:class:`~server.transport.wsconn.WsConnection` at once: aiohttp never makes its request handler,
parser, writer, request and task for it, which with aiohttp's WebSocket objects were most of an
idle connection's memory (15.5 KB per connection before, 4.3 KB after; ``docs/benchmarks.md``).
Any other first request, and any head that is not plainly a valid upgrade, goes to aiohttp as
before; an upgrade that comes later on a kept-alive connection is served by the same handler
through aiohttp's route (``server.transport.ws``).

The other half of a browser's reconnect is ``POST /v1/vstudio/ticket``, and after a server
restart it too is the first request on a new connection. When its whole body came with its
head, :class:`FrontDoor` answers it as well, with the route's own code
(:func:`server.http.auth.issue_ticket`, :func:`server.http.errors.error_response`), the
headers aiohttp would send in its order, and then gives the kept-alive connection to aiohttp
for what follows (or closes it, when the client asked): aiohttp's request handler, parser,
request, response and task were about a sixth of a browser storm's CPU. A body still on its
way, a chunked one, ``Expect``, a request behind it or anything unusual goes to aiohttp, which
answers the same. This module sits above both the transports and the REST routes
(``tests/test_layout.py``): it is the one place that knows both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from multidict import CIMultiDict

from server.context import CONTEXT, ServerContext
from server.http.auth import TicketRequest, issue_ticket
from server.http.errors import MAX_BODY, error_response, json_error, json_response, parse_model
from server.transport.rfc6455 import HandshakeError, handshake_reply
from server.transport.ws import Opening, max_message_size, serve
from server.transport.wsconn import WsConnection

__all__ = ["FRONT_DOOR", "FrontDoor", "http_response", "read_head", "ws_session"]

log = logging.getLogger("vstudio.server.front")

WS_PATH = "/v1/vstudio/ws"
_WS_REQUEST = b"GET " + WS_PATH.encode()
TICKET_PATH = "/v1/vstudio/ticket"
_TICKET_REQUEST = b"POST " + TICKET_PATH.encode() + b" "
"""How a head this front may take begins; any other is left to aiohttp unread."""


MAX_LINE = 8190
"""aiohttp's limit on the request line and on each header line (``max_line_size``,
``max_field_size``); a head past it, or with more than :data:`MAX_HEADERS` headers, is left to
aiohttp, which refuses it."""
MAX_HEADERS = 128


def read_head(head: bytes) -> tuple[str, str, CIMultiDict[str]] | None:
    """Method, target and headers of an HTTP/1.1 request head without its blank line; ``None``
    when it is not plainly one, or past aiohttp's limits (aiohttp then reads it and says what is
    wrong)."""
    lines = head.split(b"\r\n")
    if len(lines) > MAX_HEADERS + 1 or any(len(line) > MAX_LINE for line in lines):
        return None
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        return None
    try:
        method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or b" " in name:
                return None  # no colon, a folded line or a space in the name
            headers.add(name.decode("ascii"), value.strip().decode("latin-1"))
    except UnicodeDecodeError:
        return None
    return method, target, headers


def ws_session(target: str) -> tuple[bool, str | None]:
    """Whether ``target`` is the WebSocket endpoint, and the session its path names."""
    path = target.partition("?")[0]
    if path == WS_PATH:
        return True, None
    rest = path.removeprefix(WS_PATH + "/")
    if rest != path and rest and "/" not in rest:
        return True, unquote(rest)
    return False, None


def http_response(response: web.Response, keep_alive: bool) -> bytes:
    """``response`` as HTTP/1.1 bytes as aiohttp writes it: the status, its headers
    (``Content-Type``, ``Retry-After``, ``WWW-Authenticate``), the length, ``Date``,
    ``Server``, ``Connection: close`` unless kept alive, and the body."""
    body = response.body
    assert isinstance(body, bytes)  # json_response and json_error give bytes
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    lines += [
        f"Content-Length: {len(body)}",
        f"Date: {formatdate(usegmt=True)}",
        f"Server: {SERVER_SOFTWARE}",
    ]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Answering(asyncio.Protocol):
    """A connection whose one request is being answered: what comes meanwhile waits for the
    server's protocol, which takes the connection after the answer."""

    def __init__(self) -> None:
        self.early = bytearray()
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.early += data

    def eof_received(self) -> bool:
        self.eof = True
        return True  # the answer still goes out; the connection closes after it


class FrontDoor:
    """Takes the upgrades and tickets that come first on their connection; waits for them at
    shutdown."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.tasks: set[asyncio.Task[None]] = set()

    def take(
        self,
        transport: asyncio.Transport,
        head: bytes,
        rest: bytes,
        remote: str,
        later: Callable[[bytes], None],
    ) -> bool:
        """Serve the connection if ``head`` is a valid upgrade to the endpoint or a ticket
        whose body is ``rest``; else ``False`` and nothing was done (the caller gives it to
        aiohttp). After a ticket the connection goes to aiohttp through ``later``."""
        ticket = head.startswith(_TICKET_REQUEST)
        if not ticket and not head.startswith(_WS_REQUEST):
            return False  # every other first request: no parsing twice
        ctx = self.app.get(CONTEXT)
        request = read_head(head)
        if ctx is None or request is None:
            return False
        if ticket:
            kind, taken = "ticket", self._ticket(ctx, transport, request, rest, remote, later)
        else:
            kind, taken = "websocket", self._upgrade(ctx, transport, request, rest, remote)
        if taken:
            ctx.metrics.front_requests.labels(kind).inc()
        return taken

    def _upgrade(
        self,
        ctx: ServerContext,
        transport: asyncio.Transport,
        request: tuple[str, str, CIMultiDict[str]],
        rest: bytes,
        remote: str,
    ) -> bool:
        method, target, headers = request
        endpoint, session = ws_session(target)
        if not endpoint or "Content-Length" in headers or "Transfer-Encoding" in headers:
            return False
        try:
            reply = handshake_reply(method, headers)
        except HandshakeError:
            return False  # aiohttp's route answers it with the reason
        connection = WsConnection(transport, max_message_size(ctx.settings))
        transport.set_protocol(connection)
        transport.write(reply)
        if rest:  # frames sent before the 101 (RFC 6455 forbids it; read them anyway)
            connection.data_received(rest)
        opening = Opening(target, session, headers.get("Authorization"), remote)
        self._track(serve(opening, ctx, connection))
        return True

    def _ticket(
        self,
        ctx: ServerContext,
        transport: asyncio.Transport,
        request: tuple[str, str, CIMultiDict[str]],
        rest: bytes,
        remote: str,
        later: Callable[[bytes], None],
    ) -> bool:
        """Answer a ticket request whose whole body is ``rest``, as the route would."""
        _, target, headers = request
        lengths = headers.getall("Content-Length", [])
        if (
            target != TICKET_PATH
            or len(lengths) != 1
            or not lengths[0].isdigit()
            or int(lengths[0]) != len(rest)  # still on its way, or a request behind it
            or "Transfer-Encoding" in headers
            or "Expect" in headers
        ):
            return False
        answering = _Answering()
        transport.set_protocol(answering)
        keep_alive = "close" not in headers.get("Connection", "").lower()
        work = self._issue(ctx, headers.get("Authorization"), rest, remote)
        self._track(self._answer(ctx, work, transport, answering, keep_alive, later))
        return True

    async def _answer(
        self,
        ctx: ServerContext,
        work: Coroutine[Any, Any, web.Response],
        transport: asyncio.Transport,
        answering: _Answering,
        keep_alive: bool,
        later: Callable[[bytes], None],
    ) -> None:
        """Write the answer; then aiohttp has the connection, or it closes as asked (or as
        the server is shutting down)."""
        try:
            response = await work
        except asyncio.CancelledError:
            transport.close()
            raise
        if transport.is_closing():  # the client left
            return
        if keep_alive and not answering.eof and not ctx.attendance.draining:
            transport.write(http_response(response, keep_alive=True))
            later(bytes(answering.early))
        else:
            transport.write(http_response(response, keep_alive=False))
            transport.close()

    async def _issue(
        self, ctx: ServerContext, authorization: str | None, body: bytes, remote: str
    ) -> web.Response:
        """The ticket route (``server.http.auth.ticket``) for a request the front took."""
        try:
            try:
                who = await ctx.identify_header(authorization)
                asked = parse_model(body, TicketRequest, self.app[MAX_BODY])
                return json_response(await issue_ticket(ctx, who, asked))
            except Exception as exc:
                refusal = error_response(exc, ctx, "POST", TICKET_PATH, remote)
                if refusal is None:
                    raise
                return refusal
        except Exception:
            log.exception("the ticket request failed")
            return json_error(500, 500, "the ticket request failed inside the server")

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self, app: web.Application, timeout: float = 10.0) -> None:
        """At shutdown, after the drain: wait for the connections still closing, then end them."""
        if not self.tasks:
            return
        _, left = await asyncio.wait(set(self.tasks), timeout=timeout)
        for task in left:
            task.cancel()
        for task in left:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


FRONT_DOOR = web.AppKey("front_door", FrontDoor)
