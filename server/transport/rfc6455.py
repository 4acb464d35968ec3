"""The server's side of RFC 6455 framing, with no I/O: bytes in, messages out, frames to write.

Apart from the connection that moves the bytes (:mod:`server.transport.wsconn`), as in the
websockets library: the rules are tested by feeding bytes, no sockets. Our own rather than
aiohttp's reader because that one only runs inside aiohttp's request handler, whose objects
(with the reader's queue) were most of an idle connection's memory; and rather than the
websockets library's protocol because its generator parser costs about 7.7 us a frame against
2.4 here. Client frames must be masked; the server's are not (section 5.1). No extension is
negotiated, so every reserved bit must be 0.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Mapping

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameError",
    "FrameReader",
    "HandshakeError",
    "accept_key",
    "close_frame",
    "control_frame",
    "handshake_reply",
    "parse_close",
]

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_DATA = frozenset({OP_TEXT, OP_BINARY})
_CONTROL = frozenset({OP_CLOSE, OP_PING, OP_PONG})

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
TOO_BIG = 1009
NO_STATUS = 1005
"""What a close frame without a code means (section 7.1.5); never sent on the wire."""

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class FrameError(Exception):
    """The client broke the framing rules: close with ``code`` (1002, 1007 or 1009)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _unmask(mask: bytes, data: bytes) -> bytes:
    """``data`` XOR the repeated 4-byte ``mask``, as one big-integer operation (in C)."""
    size = len(data)
    if not size:
        return b""
    key = int.from_bytes((mask * ((size >> 2) + 1))[:size], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(size, "little")


class FrameReader:
    """Client frames in, whole messages and control frames out, in the order they came.

    :meth:`feed` returns ``(opcode, payload)`` pairs: ``OP_TEXT`` or ``OP_BINARY`` with the
    whole message (fragments joined; text checked to be UTF-8), and ``OP_PING``, ``OP_PONG``,
    ``OP_CLOSE`` as they come, also between the fragments of a message (section 5.4). It raises
    :class:`FrameError` at the first broken rule; the connection must then close with its code.
    A frame is only kept until it is complete, and a message longer than ``max_size`` is refused
    from its length field, before its bytes are buffered. A frame that comes in many pieces is
    gathered in linear time: the pieces are appended, and nothing is parsed again until the
    bytes the frame needs are in.
    """

    __slots__ = ("_buffer", "_need", "_opcode", "_parts", "_size", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer: bytearray | None = None  # an incomplete frame's bytes so far
        self._need = 0  # bytes the buffer must hold before it is parsed again
        self._opcode = 0  # of the fragmented message being read, 0 when none is
        self._parts: list[bytes] | None = None
        self._size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        kept = self._buffer
        if kept is not None:
            kept += data
            if len(kept) < self._need:
                return []
            buffer: bytes = bytes(kept)
            self._buffer = None
        else:
            buffer = data
        out: list[tuple[int, bytes]] = []
        at, end, need = 0, len(buffer), 2
        while end - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            if first & 0x70:
                raise FrameError(PROTOCOL_ERROR, "reserved bits set; no extension was agreed")
            if not second & 0x80:
                raise FrameError(PROTOCOL_ERROR, "client frames must be masked")
            opcode, final, length = first & 0x0F, first & 0x80, second & 0x7F
            head = 6
            if length == 126:
                head = need = 8
                if end - at < head:
                    break
                length = struct.unpack_from("!H", buffer, at + 2)[0]
            elif length == 127:
                head = need = 14
                if end - at < head:
                    break
                length = struct.unpack_from("!Q", buffer, at + 2)[0]
            self._check(opcode, final, length)
            need = head + length
            if end - at < need:
                break
            need = 2
            start = at + head
            payload = _unmask(buffer[start - 4 : start], buffer[start : start + length])
            at = start + length
            message = self._take(opcode, final, payload)
            if message is not None:
                out.append(message)
        if at < end:
            self._buffer, self._need = bytearray(buffer[at:]), need
        return out

    def _check(self, opcode: int, final: int, length: int) -> None:
        """Refuse a frame from its header alone, before its payload is waited for."""
        if opcode in _CONTROL:
            if not final:
                raise FrameError(PROTOCOL_ERROR, "a control frame must not be fragmented")
            if length > 125:
                raise FrameError(PROTOCOL_ERROR, "a control frame carries at most 125 bytes")
        elif opcode in _DATA:
            if self._opcode:
                raise FrameError(PROTOCOL_ERROR, "a new message began inside a fragmented one")
            if length > self.max_size:
                raise FrameError(TOO_BIG, f"message over {self.max_size} bytes")
        elif opcode == OP_CONT:
            if not self._opcode:
                raise FrameError(PROTOCOL_ERROR, "a continuation frame with no message begun")
            if self._size + length > self.max_size:
                raise FrameError(TOO_BIG, f"message over {self.max_size} bytes")
        else:
            raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")

    def _take(self, opcode: int, final: int, payload: bytes) -> tuple[int, bytes] | None:
        if opcode in _CONTROL:
            return opcode, payload
        if opcode != OP_CONT:
            if final:
                return _whole(opcode, payload)
            self._opcode, self._parts, self._size = opcode, [payload], len(payload)
            return None
        assert self._parts is not None
        self._parts.append(payload)
        self._size += len(payload)
        if not final:
            return None
        message = _whole(self._opcode, b"".join(self._parts))
        self._opcode, self._parts, self._size = 0, None, 0
        return message


def _whole(opcode: int, payload: bytes) -> tuple[int, bytes]:
    if opcode == OP_TEXT:
        try:
            payload.decode()
        except UnicodeDecodeError as exc:
            raise FrameError(INVALID_DATA, "a text message is not valid UTF-8") from exc
    return opcode, payload


def _valid_close_code(code: int) -> bool:
    """Codes a peer may send (section 7.4): 1000-1003, 1007-1014, 3000-4999."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int, str]:
    """A close frame's code and reason; 1005 (no code) when it is empty."""
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "a close frame's code takes 2 bytes")
    code = struct.unpack_from("!H", payload)[0]
    if not _valid_close_code(code):
        raise FrameError(PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError as exc:
        raise FrameError(INVALID_DATA, "a close reason is not valid UTF-8") from exc
    return code, reason


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A server control frame (ping, pong, close): final, unmasked, at most 125 bytes."""
    return struct.pack("!BB", 0x80 | opcode, len(payload)) + payload[:125]


def close_frame(code: int | None, reason: bytes = b"") -> bytes:
    """A close frame with ``code`` and ``reason`` cut to fit; an empty one for ``None``."""
    if code is None:
        return control_frame(OP_CLOSE)
    return control_frame(OP_CLOSE, struct.pack("!H", code) + reason[:123])


class HandshakeError(Exception):
    """An upgrade request this server does not accept: answer ``status`` with the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def _has_token(value: str, token: str) -> bool:
    return any(part.strip().lower() == token for part in value.split(","))


def handshake_reply(method: str, headers: Mapping[str, str]) -> bytes:
    """The ``101`` for a valid opening handshake (section 4.2.1); else :class:`HandshakeError`.

    ``headers`` must look names up without regard to case (aiohttp's ``CIMultiDict`` does).
    No extension and no subprotocol is agreed, whatever the client offers.
    """
    if method != "GET":
        raise HandshakeError(400, "a WebSocket is opened with GET")
    if not _has_token(headers.get("Upgrade", ""), "websocket"):
        raise HandshakeError(400, "no WebSocket upgrade: send Upgrade: websocket")
    if not _has_token(headers.get("Connection", ""), "upgrade"):
        raise HandshakeError(400, "no WebSocket upgrade: send Connection: Upgrade")
    if headers.get("Sec-WebSocket-Version", "").strip() != "13":
        raise HandshakeError(426, "this server speaks WebSocket version 13")
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
    )
