"""Server frames as bytes: the JSON envelope and the WebSocket framing around it.

Fan-out writes one pre-built WebSocket frame to thousands of transports, so the framing is done
here once per event (RFC 6455 section 5.2: FIN, opcode text, no mask from a server, no
compression) instead of once per connection by the WebSocket library.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

from broker.models import MessageType, ProtocolError, now_ms

__all__ = [
    "PING_FRAME",
    "envelope",
    "error_envelope",
    "reply_envelope",
    "ws_text_frame",
]

PING_FRAME = b"\x89\x00"
"""A protocol-level ping with no payload."""


def ws_text_frame(payload: bytes) -> bytes:
    """One unmasked, uncompressed, final text frame carrying ``payload``."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


def envelope(
    type_: str,
    payload: dict[str, Any],
    *,
    request_id: str | None = None,
    event_id: str | None = None,
) -> bytes:
    """``{type, payload, timestamp, requestId?, id?}`` as JSON bytes."""
    body: dict[str, Any] = {"type": type_, "payload": payload, "timestamp": now_ms()}
    if request_id is not None:
        body["requestId"] = request_id
    if event_id is not None:
        body["id"] = event_id
    return orjson.dumps(body)


def reply_envelope(type_: str, request_id: str, result: dict[str, Any] | None) -> bytes:
    """The one reply to a request: its type, its ``requestId``, the handler's result."""
    return envelope(type_, result if result is not None else {"ok": True}, request_id=request_id)


def error_envelope(error: ProtocolError, request_id: str | None = None) -> bytes:
    """An ``error`` frame with ``{code, message, retryAfter?}``."""
    return envelope(MessageType.ERROR, error.payload(), request_id=request_id)
