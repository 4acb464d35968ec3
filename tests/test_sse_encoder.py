"""The SSE wire format and the WebSocket framing, without sockets."""

from __future__ import annotations

import struct

import pytest

from broker.bus import BusEvent, encode_event
from server.fanout.frame import coalesce
from server.wire import KEEPALIVE, sse_comment, sse_event, ws_text_frame


def test_event_with_type_id_and_data() -> None:
    assert sse_event(b'{"a":1}', event="poll.results", event_id="17-0") == (
        b'event: poll.results\nid: 17-0\ndata: {"a":1}\n\n'
    )


def test_multiline_data_becomes_one_data_line_per_line() -> None:
    assert sse_event(b"one\r\ntwo\nthree") == b"data: one\ndata: two\ndata: three\n\n"


def test_retry_and_comments() -> None:
    assert sse_event(b"x", retry_ms=2000) == b"retry: 2000\ndata: x\n\n"
    assert sse_comment("hi\nthere") == b": hi\n: there\n\n"
    assert KEEPALIVE.startswith(b":") and KEEPALIVE.endswith(b"\n\n")


def test_a_line_break_in_a_field_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        sse_event(b"x", event="bad\ntype")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_websocket_text_frame_header(size: int) -> None:
    payload = b"x" * size
    frame = ws_text_frame(payload)
    assert frame[0] == 0x81  # FIN + text
    assert frame[1] & 0x80 == 0  # a server never masks
    if size < 126:
        assert frame[1] == size and frame[2:] == payload
    elif size < 65536:
        assert frame[1] == 126 and struct.unpack("!H", frame[2:4])[0] == size
    else:
        assert frame[1] == 127 and struct.unpack("!Q", frame[2:10])[0] == size
    assert frame.endswith(payload)


def _event(kind: str, type_: str, n: int) -> BusEvent:
    return BusEvent("s1", kind, f"{n}-0", encode_event(type_, {"id": f"twitch:{n}"}))


def test_coalesce_groups_chat_runs_and_keeps_order() -> None:
    events = [
        _event("chat", "chat.message", 1),
        _event("chat", "chat.message", 2),
        _event("chat", "chat.delete", 3),
        _event("chat", "chat.message", 4),
        _event("events", "tip.received", 5),
    ]
    frames = coalesce(events)
    assert [frame.type for frame in frames] == [
        "chat.aggregate",
        "chat.delete",
        "chat.aggregate",
        "tip.received",
    ]
    assert frames[0].event_id == "2-0" and len(frames[0].payload()["messages"]) == 2
    assert frames[0].after((1, 0)).payload()["messages"] == [{"id": "twitch:2"}]  # type: ignore[union-attr]  # an event after (1, 0) is left
    assert frames[0].after((2, 0)) is None
    assert frames[3].json.endswith(b',"id":"5-0"}')
