"""The Server-Sent Events wire format, as pure functions (no sockets, tested alone).

Per the WHATWG spec an event is ``event:``, ``data:`` and ``id:`` lines ended by a blank
line; a line starting with ``:`` is a comment (our keep-alive). A value never contains a line
break: ``data`` is split into one line per line, other fields refuse them.
"""

from __future__ import annotations

__all__ = ["KEEPALIVE", "sse_comment", "sse_event"]

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
