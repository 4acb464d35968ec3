"""The server's RFC 6455 framing, fed bytes with no socket (``server/transport/rfc6455.py``).

Client frames are built by the websockets library (a test dependency), an implementation
independent of ours, so a rule both got wrong the same way is unlikely.
"""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from server.transport.rfc6455 import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    HandshakeError,
    accept_key,
    close_frame,
    control_frame,
    handshake_reply,
    parse_close,
)


def client(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin=fin).serialize(mask=True)


def with_rsv1(frame: bytes) -> bytes:
    return bytes([frame[0] | 0x40]) + frame[1:]


def unmasked(opcode: int, data: bytes) -> bytes:
    return struct.pack("!BB", 0x80 | opcode, len(data)) + data


def feed_all(reader: FrameReader, data: bytes, step: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for at in range(0, len(data), step):
        out += reader.feed(data[at : at + step])
    return out


def test_the_rfcs_own_example_a_masked_hello() -> None:
    # RFC 6455 section 5.7: a single-frame masked text message "Hello"
    frame = bytes.fromhex("818537fa213d7f9f4d5158")
    assert FrameReader(100).feed(frame) == [(OP_TEXT, b"Hello")]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_every_length_encoding_reads_back(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    assert FrameReader(100_000).feed(client(Opcode.BINARY, data[:size])) == [
        (OP_BINARY, data[:size])
    ]


@given(
    messages=st.lists(
        st.tuples(
            st.sampled_from([Opcode.TEXT, Opcode.BINARY]), st.text(max_size=300), st.integers(1, 4)
        ),
        max_size=6,
    ),
    step=st.integers(1, 64),
)
def test_fragments_and_split_writes_give_the_same_messages(
    messages: list[tuple[Opcode, str, int]], step: int
) -> None:
    """Any message cut into fragments (a ping between them), fed in any slices."""
    wire = b""
    expected: list[tuple[int, bytes]] = []
    for opcode, text, parts in messages:
        data = text.encode()
        cut = [data[len(data) * i // parts : len(data) * (i + 1) // parts] for i in range(parts)]
        for index, piece in enumerate(cut):
            first = opcode if index == 0 else Opcode.CONT
            wire += client(first, piece, fin=index == parts - 1)
            if index == 0 and parts > 1:
                wire += client(Opcode.PING, b"between")
                expected.append((OP_PING, b"between"))
        expected.append((int(opcode), data))
    assert feed_all(FrameReader(10_000), wire, step) == expected


def test_utf8_split_across_fragments_is_valid() -> None:
    data = "é€😀".encode()
    wire = client(Opcode.TEXT, data[:3], fin=False) + client(Opcode.CONT, data[3:])
    assert FrameReader(100).feed(wire) == [(OP_TEXT, data)]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (unmasked(OP_TEXT, b"hi"), 1002),
        (with_rsv1(client(Opcode.TEXT, b"hi")), 1002),
        (b"\x83\x80abcd", 1002),
        (client(Opcode.CONT, b"hi"), 1002),
        (client(Opcode.TEXT, b"a", fin=False) + client(Opcode.TEXT, b"b"), 1002),
        (b"\x09\x80abcd", 1002),  # a ping with fin=0
        (b"\x89\xfe\x00\x7eabcd" + b"x" * 126, 1002),  # a control frame of 126 bytes
        (client(Opcode.TEXT, b"\xff\xfe"), 1007),
        (client(Opcode.TEXT, "é".encode()[:1]), 1007),
        (client(Opcode.BINARY, b"x" * 101), 1009),
        (client(Opcode.TEXT, b"x" * 60, fin=False) + client(Opcode.CONT, b"x" * 60), 1009),
    ],
    ids=[
        "unmasked",
        "rsv1",
        "opcode-3",
        "continuation-first",
        "text-inside-fragments",
        "fragmented-ping",
        "long-ping",
        "bad-utf8",
        "cut-utf8",
        "too-big",
        "too-big-in-fragments",
    ],
)
def test_each_broken_rule_is_refused_with_its_code(wire: bytes, code: int) -> None:
    with pytest.raises(FrameError) as caught:
        FrameReader(100).feed(wire)
    assert caught.value.code == code


def test_a_too_big_frame_is_refused_from_its_header_before_its_bytes() -> None:
    header = b"\x82\xff" + struct.pack("!Q", 2**40) + b"mask"
    with pytest.raises(FrameError) as caught:
        FrameReader(1000).feed(header)
    assert caught.value.code == 1009


def test_control_frames_pass_through_in_order() -> None:
    wire = client(Opcode.PING, b"p") + client(Opcode.PONG, b"q") + client(Opcode.CLOSE, b"\x03\xe8")
    assert FrameReader(10).feed(wire) == [(OP_PING, b"p"), (OP_PONG, b"q"), (OP_CLOSE, b"\x03\xe8")]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", (1005, "")),
        (struct.pack("!H", 1000) + b"bye", (1000, "bye")),
        (struct.pack("!H", 1012), (1012, "")),
        (struct.pack("!H", 4999), (4999, "")),
        (struct.pack("!H", 3000), (3000, "")),
    ],
)
def test_close_payloads_read(payload: bytes, expected: tuple[int, str]) -> None:
    assert parse_close(payload) == expected


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),
        *((struct.pack("!H", bad), 1002) for bad in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000)),
        (struct.pack("!H", 1000) + b"\xff", 1007),
    ],
)
def test_close_payloads_refused(payload: bytes, code: int) -> None:
    with pytest.raises(FrameError) as caught:
        parse_close(payload)
    assert caught.value.code == code


def test_server_frames_are_unmasked_and_read_by_another_implementation() -> None:
    from websockets.frames import Close

    frame = close_frame(4001, b"session not found")
    assert frame[1] & 0x80 == 0
    assert Close.parse(frame[2:]).code == 4001
    assert close_frame(None) == b"\x88\x00"
    assert control_frame(OP_PONG, b"abc") == b"\x8a\x03abc"
    assert len(close_frame(1000, b"x" * 500)) == 2 + 125  # cut to a control frame's limit


def test_the_rfcs_accept_key() -> None:
    # RFC 6455 section 1.3
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def good_headers(**changes: str) -> dict[str, str]:
    headers = {
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
    }
    headers.update(changes)
    return headers


def test_a_valid_handshake_gets_101_with_the_accept_key_and_no_extension() -> None:
    reply = handshake_reply(
        "GET", good_headers(**{"Sec-WebSocket-Extensions": "permessage-deflate"})
    )
    assert reply.startswith(b"HTTP/1.1 101 ")
    key = good_headers()["Sec-WebSocket-Key"]
    assert f"Sec-WebSocket-Accept: {accept_key(key)}\r\n".encode() in reply
    assert b"Extensions" not in reply and reply.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("method", "changes", "status"),
    [
        ("POST", {}, 400),
        ("GET", {"Upgrade": "h2c"}, 400),
        ("GET", {"Connection": "keep-alive"}, 400),
        ("GET", {"Sec-WebSocket-Version": "8"}, 426),
        ("GET", {"Sec-WebSocket-Key": "short"}, 400),
        ("GET", {"Sec-WebSocket-Key": base64.b64encode(b"x" * 15).decode()}, 400),
    ],
)
def test_a_broken_handshake_is_refused(method: str, changes: dict[str, str], status: int) -> None:
    with pytest.raises(HandshakeError) as caught:
        handshake_reply(method, good_headers(**changes))
    assert caught.value.status == status
