"""One WebSocket connection once its upgrade is answered: our protocol on aiohttp's transport.

aiohttp parses the upgrade request and routes it; the handler then answers the handshake itself
and sets a :class:`WsConnection` as the transport's protocol (``transport.set_protocol``, public
asyncio API), so every frame after that is read by :class:`~server.transport.rfc6455.FrameReader`
without aiohttp's reader, queue and ``receive()`` per message. The handler's task still reads the
messages one at a time (:meth:`WsConnection.receive`) and sends the close handshake itself.
aiohttp's protocol is told when the connection ends, so its server forgets it as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from server.transport.rfc6455 import (
    NO_STATUS,
    OP_CLOSE,
    OP_PONG,
    FrameError,
    FrameReader,
    close_frame,
    control_frame,
    parse_close,
)

__all__ = ["CLOSED", "WsConnection"]

log = logging.getLogger("vstudio.server.transport.wsconn")

CLOSED = -1
"""What :meth:`WsConnection.receive` returns once nothing more will come."""
PAUSE_AT = 32
"""Messages waiting to be read before the socket stops being read (the client waits)."""


class WsConnection(asyncio.Protocol):
    """The frames of one connection in, close handshake and control frames out.

    Data messages, pings and pongs wait in order for :meth:`receive`; a close from the client is
    answered with the same code and ends the connection; a broken frame closes it with the RFC's
    code (1002, 1007, 1009), which :attr:`error` keeps for the log.
    """

    __slots__ = (
        "close_code",
        "close_received",
        "close_sent",
        "error",
        "inbox",
        "lost",
        "paused",
        "previous",
        "reader",
        "transport",
        "waiter",
    )

    def __init__(
        self, transport: asyncio.Transport, max_size: int, previous: Any | None = None
    ) -> None:
        self.transport = transport
        self.reader = FrameReader(max_size)
        self.previous = previous
        """The protocol the transport had (aiohttp's), told of the end of the connection."""
        self.inbox: list[tuple[int, bytes]] = []
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.close_sent = False
        self.close_received = False
        self.close_code: int | None = None
        """The code of the client's close frame, once it came."""
        self.lost = False
        self.error: FrameError | None = None

    @property
    def closed(self) -> bool:
        """No more frames may be sent: a close went out, came in, or the connection is gone."""
        return self.close_sent or self.close_received or self.lost

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.close_received or self.error is not None:
            return
        try:
            messages = self.reader.feed(data)
        except FrameError as exc:
            self.error = exc
            if not self.close_sent:
                self.close_sent = True
                self.transport.write(close_frame(exc.code, exc.reason.encode()))
            self.transport.close()
            self._wake()
            return
        for message in messages:
            opcode = message[0]
            if opcode == OP_CLOSE:
                self._close_received(message[1])
                return
            if self.close_sent:
                continue  # closing: what still comes is not read (section 5.5.1)
            self.inbox.append(message)
        if len(self.inbox) >= PAUSE_AT and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def _close_received(self, payload: bytes) -> None:
        try:
            code, reason = parse_close(payload)
        except FrameError as exc:
            self.error = exc
            code, reason = exc.code, exc.reason
        self.close_received = True
        self.close_code = code
        if not self.close_sent:
            self.close_sent = True
            reply = None if code == NO_STATUS else code
            self.transport.write(close_frame(reply, reason.encode()))
        self.transport.close()  # the server closes TCP first (section 7.1.1)
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()
        previous, self.previous = self.previous, None
        if previous is not None:
            previous.connection_lost(exc)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the handler's side -------------------------------------------------------------------

    async def receive(self) -> tuple[int, bytes]:
        """The next data message as ``(opcode, payload)``, a ping or pong; ``(CLOSED, b"")``
        once the connection is closing or gone."""
        while not self.inbox:
            if self.closed:  # a broken frame was answered with a close too
                return CLOSED, b""
            await self._wait()
        message = self.inbox.pop(0)
        if self.paused and len(self.inbox) < PAUSE_AT // 2:
            self._resume()
        return message

    async def _wait(self) -> None:
        """Until the protocol has news: a message, a close, an error or the end."""
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def _resume(self) -> None:
        self.paused = False
        self.transport.resume_reading()  # a no-op on a closing transport (asyncio and uvloop)

    def pong(self, payload: bytes) -> None:
        if not self.closed:
            self.transport.write(control_frame(OP_PONG, payload))

    async def close(self, code: int = 1000, message: bytes = b"", timeout: float = 3.0) -> None:
        """Send a close frame, wait up to ``timeout`` for the client's, then end the connection."""
        if not self.close_sent and not self.lost:
            self.close_sent = True
            self.transport.write(close_frame(code, message))
        if not self.close_received and not self.lost:
            self.inbox.clear()
            if self.paused:  # the client's close frame must be read
                self._resume()
            try:
                async with asyncio.timeout(timeout):
                    while not self.close_received and not self.lost:
                        await self._wait()
            except TimeoutError:
                log.info("no close frame from the client within %g s", timeout)
        self.transport.close()
