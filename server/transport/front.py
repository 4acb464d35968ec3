"""WebSocket upgrades that are a connection's first request, served without aiohttp.

A browser opens every WebSocket on a connection of its own, so for nearly every viewer the
upgrade is the first request on its connection, and the guard (:mod:`server.guard`) has read
its head before anything else has. When that head is a valid upgrade to ``/v1/vstudio/ws``,
:class:`WsFront` answers it and gives the connection to a
:class:`~server.transport.wsconn.WsConnection` at once: aiohttp never makes its request handler,
parser, writer, request and task for it, which with aiohttp's WebSocket objects were most of an
idle connection's memory (15.5 KB per connection before, 4.3 KB after; ``docs/benchmarks.md``).
Any other first request, and any head that is not plainly a valid upgrade, goes to aiohttp as
before; an upgrade that comes later on a kept-alive connection is served by the same handler
through aiohttp's route (``server.transport.ws``).
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict

from server.context import CONTEXT
from server.transport.rfc6455 import HandshakeError, handshake_reply
from server.transport.ws import Opening, max_message_size, serve
from server.transport.wsconn import WsConnection

__all__ = ["WS_FRONT", "WsFront", "read_head", "ws_session"]

WS_PATH = "/v1/vstudio/ws"
_WS_REQUEST = b"GET " + WS_PATH.encode()
"""How a head this front may take begins; any other is left to aiohttp unread."""


def read_head(head: bytes) -> tuple[str, str, CIMultiDict[str]] | None:
    """Method, target and headers of an HTTP/1.1 request head without its blank line; ``None``
    when it is not plainly one (aiohttp then reads it and says what is wrong)."""
    lines = head.split(b"\r\n")
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


class WsFront:
    """Takes the upgrades that come first on their connection; waits for them at shutdown."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.tasks: set[asyncio.Task[None]] = set()

    def take(self, transport: asyncio.Transport, head: bytes, rest: bytes, remote: str) -> bool:
        """Serve the connection if ``head`` is a valid upgrade to the endpoint; else ``False``
        and nothing was done (the caller gives it to aiohttp)."""
        if not head.startswith(_WS_REQUEST):  # every other first request: no parsing twice
            return False
        ctx = self.app.get(CONTEXT)
        request = read_head(head)
        if ctx is None or request is None:
            return False
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
        task = asyncio.get_running_loop().create_task(serve(opening, ctx, connection))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

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


WS_FRONT = web.AppKey("ws_front", WsFront)
