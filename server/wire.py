"""The bytes each transport puts on the wire, as pure functions (no sockets, tested alone).

WebSocket: fan-out writes one pre-built frame to thousands of transports, so the framing is
done here once per event (RFC 6455 section 5.2: FIN, opcode text, no mask from a server, no
compression) instead of once per connection by the WebSocket library; the JSON envelope
``{type, payload, timestamp, requestId?, id?}`` goes inside.

Server-Sent Events: per the WHATWG spec an event is ``event:``, ``data:`` and ``id:`` lines
ended by a blank line; a line starting with ``:`` is a comment (our keep-alive). A value never
contains a line break: ``data`` is split into one line per line, other fields refuse them.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import orjson

from broker.models import MessageType, ProtocolError, now_ms

__all__ = [
    "KEEPALIVE",
    "PING_FRAME",
    "STREAM_ID",
    "envelope",
    "error_envelope",
    "reply_envelope",
    "sse_comment",
    "sse_event",
    "ws_text_frame",
]

STREAM_ID = re.compile(r"\d{1,19}(-\d{1,19})?")
"""An event id a client may resume from, as Redis takes stream ids (64-bit parts); checked
with ``fullmatch`` (no newline)."""

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


# --- Server-Sent Events --------------------------------------------------------------------

KEEPALIVE = b": keep-alive\n\n"


def _field(name: bytes, value: bytes) -> bytes:
    if b"\n" in value or b"\r" in value:
        raise ValueError(f"SSE {name.decode()} must not contain a line break")
    return name + b": " + value + b"\n"


def sse_event(
    data: bytes,
    *,
    event: str | None = None,
    event_id: str | None = None,
    retry_ms: int | None = None,
) -> bytes:
    """One event: optional ``event``/``id``/``retry`` fields, then ``data`` line by line."""
    out = b""
    if event is not None:
        out += _field(b"event", event.encode())
    if event_id is not None:
        out += _field(b"id", event_id.encode())
    if retry_ms is not None:
        out += _field(b"retry", str(int(retry_ms)).encode())
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    out += b"".join(b"data: " + line + b"\n" for line in lines)
    return out + b"\n"


def sse_comment(text: str) -> bytes:
    """A comment line (ignored by EventSource; keeps proxies from closing an idle stream)."""
    return b"".join(b": " + line.encode() + b"\n" for line in text.splitlines() or [""]) + b"\n"
