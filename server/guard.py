"""A guard in front of aiohttp's protocol: slow request heads end, one address may hold only
so many connections that have not yet sent a request, and a WebSocket upgrade that comes first
on its connection is given to the WebSocket front instead of aiohttp.

aiohttp has no timeout for a request head of its own, so a client sending one header line
every few seconds (slowloris) held a socket for as long as the keep-alive timer (75 s). Each
connection starts with a :class:`GuardedProtocol`, which holds its bytes until the first head
ends (``CRLF CRLF``): if that takes longer than ``header_timeout`` from the accept, the
connection is closed. Later heads on a kept-alive connection are bounded by aiohttp's keep-alive
timer, which the server sets to the same value. Once the first head is in, the guard offers it
to the :class:`Front` (``server/front.py`` takes a valid upgrade to the WebSocket endpoint, and
a ticket request whose body came with its head, after whose answer it gives the connection to
aiohttp through ``later``), else makes aiohttp's protocol and hands it the connection and every
byte so far (``transport.set_protocol``); either way it is out of the path, so a long-lived
WebSocket pays nothing for it per frame. A head sent in many small pieces is gathered in linear
time (each piece is appended, and only the new bytes are searched).

A connection that has not completed a request head cannot have shown a credential, so those
are the unauthenticated ones: :class:`PendingConnections` counts them per peer address in this
process, and a connection beyond ``max_pending`` is answered 503 and closed at once. The count
is per process on purpose: it is consulted on every accept, before anything is known about the
client, and a Redis round trip there would let a flood of connects load Redis; with N processes
sharing the port an address may hold N times the cap, which still bounds it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, cast

__all__ = ["HEAD_END", "Front", "GuardedProtocol", "PendingConnections"]

log = logging.getLogger("vstudio.server.guard")

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 65536
"""Bytes held while waiting for the first head to end; past it, aiohttp refuses the head."""

_REFUSAL_BODY = (
    b'{"code": 4008, "message": "too many unfinished connections from this address; '
    b'try again", "retryAfter": 5}'
)
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 5\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)
"""What a connection beyond the cap gets before it is closed (it has sent nothing yet)."""


class PendingConnections:
    """Connections per peer address that have not completed a request head (this process)."""

    def __init__(self, max_pending: int, header_timeout: float) -> None:
        self.max_pending = max_pending
        self.header_timeout = header_timeout
        self.by_address: Counter[str] = Counter()

    def take(self, address: str) -> bool:
        """Count one more for ``address``; ``False`` (nothing counted) when it has its cap."""
        if self.max_pending and self.by_address[address] >= self.max_pending:
            return False
        self.by_address[address] += 1
        return True

    def give_back(self, address: str) -> None:
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]

    def wrap(
        self, factory: Callable[[], asyncio.Protocol], front: Front | None = None
    ) -> Callable[[], asyncio.Protocol]:
        """A protocol factory whose protocols are guarded by this count and timeout, and whose
        first request goes to ``front`` if it takes it (else to a protocol of ``factory``)."""
        return lambda: GuardedProtocol(factory, self, front)


class Front(Protocol):
    """Who may take a connection by its first request head, instead of aiohttp."""

    def take(
        self,
        transport: asyncio.Transport,
        head: bytes,
        rest: bytes,
        remote: str,
        later: Callable[[bytes], None],
    ) -> bool:
        """Serve the connection whose first head (without its blank line) is ``head`` and
        whose bytes after it are ``rest``; ``False`` when not taken, nothing done. A front that
        answered one request and keeps the connection open calls ``later`` with what came
        after it: the server's protocol takes the connection from there."""
        ...


class GuardedProtocol(asyncio.Protocol):
    """Holds a connection until its first request head is in, then gives it to ``front`` or
    to a new protocol of ``factory``; closes it if that head is not complete within the timeout,
    and refuses it if its address has too many pending."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        pending: PendingConnections,
        front: Front | None = None,
    ) -> None:
        self.factory = factory
        self.front = front
        self.pending = pending
        self.address: str | None = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.head: bytearray | None = None
        """The first head's bytes so far, when it did not come in one piece."""
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass
        self.transport = transport
        peer: Any = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self.pending.take(address):
            self.refused = True
            log.warning("refused a connection: too many unfinished ones from %s", address)
            transport.write(REFUSAL)
            transport.close()
            return
        self.address = address
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.pending.header_timeout, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self.timer = None
        log.info(
            "closed a connection from %s: no complete request head within %g s",
            self.address,
            self.pending.header_timeout,
        )
        self._head_done()
        if self.transport is not None:
            self.transport.abort()

    def _head_done(self) -> None:
        """The first head ended (or the connection did): it no longer counts as pending."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.address is not None:
            self.pending.give_back(self.address)
            self.address = None

    def data_received(self, data: bytes) -> None:
        if self.refused or self.transport is None:
            return
        head = self.head
        if head is None:  # nearly always: the whole head in the first piece
            seen: bytes | bytearray = data
            end = data.find(HEAD_END)
        else:
            searched = max(0, len(head) - len(HEAD_END) + 1)
            head += data
            seen, end = head, head.find(HEAD_END, searched)
        if end < 0 and len(seen) <= MAX_HEAD:
            if head is None:
                self.head = bytearray(data)
            return
        self.head = None
        whole = bytes(seen)
        remote = self.address or "unknown"
        self._head_done()
        transport = self.transport
        if end >= 0 and self.front is not None:
            rest = whole[end + len(HEAD_END) :]
            later = partial(self._to_server, transport)
            if self.front.take(transport, whole[:end], rest, remote, later):
                return
        self._to_server(transport, whole)

    def _to_server(self, transport: asyncio.Transport, data: bytes) -> None:
        """Step out of the way: from here the transport calls the server's protocol for
        everything, the connection's end included."""
        inner = self.factory()
        transport.set_protocol(inner)
        inner.connection_made(transport)
        if data:
            inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None  # before its first head ended: close it

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.refused:
            self._head_done()
