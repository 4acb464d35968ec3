"""RFC 6455 on the wire: the WebSocket endpoint ``/v1/vstudio/ws?ticket=T`` of a real server.

These tests are the contract a replacement of aiohttp's WebSocket implementation must keep, so
they look at bytes, not at the server's code: a raw asyncio socket writes the HTTP upgrade and
hand-built frames (masked with a random key, as a client must), and reads the server's frames
itself (unmasked, as a server must), which lets each test choose the masking, fragmentation,
opcodes and timing. The ``websockets`` package connects once as a second, independent client.

Written against aiohttp's WebSocket implementation and kept by ours
(``server/transport/rfc6455.py``), which also refuses what aiohttp let through: an unmasked
client frame, and the close codes 1006 and 5000.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websockets_connect

from broker.models import ErrorCode
from config.settings import ServerSettings
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

MAX_MESSAGE_BYTES: int = ServerSettings.model_fields["max_message_bytes"].default
"""The largest message the server accepts (4096): larger ones get error 4007, then close 4007."""
HARD_LIMIT = max(MAX_MESSAGE_BYTES * 16, 65536)
"""The frame reader's own limit (``max_message_size`` in server/transport/ws.py): above it, 1009."""


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``key`` (RFC 6455 5.3)."""
    size = len(payload)
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False, masked: bool = True
) -> bytes:
    """One client frame; ``masked=False`` only to see the server refuse it."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, bit | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, bit | 127, size)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + mask(payload, key)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def ping_message(request_id: str, size: int | None = None) -> bytes:
    """``{"type":"ping","requestId":...}``, padded with JSON whitespace to ``size`` bytes."""
    data = orjson.dumps({"type": "ping", "requestId": request_id})
    if size is not None:
        assert size >= len(data)
        data += b" " * (size - len(data))
    return data


def accept_of(key: bytes) -> str:
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    def json(self) -> dict[str, Any]:
        assert self.opcode == TEXT, self
        data: dict[str, Any] = orjson.loads(self.payload)
        return data

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE, self
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


class Raw:
    """A client connection on a bare socket: frames out as given, frames in checked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, *frames: bytes) -> None:
        """``frames`` in one write."""
        self.writer.write(b"".join(frames))
        await self.writer.drain()

    async def recv(self, timeout: float = 5) -> Frame:
        """The server's next frame: never masked, no reserved bit (no extension negotiated)."""
        read = self.reader.readexactly
        async with asyncio.timeout(timeout):
            first, second = await read(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack("!H", await read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await read(8))[0]
            assert not second & 0x80, "a server frame must not be masked (RFC 6455 5.1)"
            assert not first & 0x70, f"reserved bits set in a server frame: {first:#04x}"
            payload = await read(size)
        return Frame(bool(first & 0x80), first & 0x0F, payload)

    async def reply(self, request_id: str, timeout: float = 5) -> dict[str, Any]:
        """The text frame answering ``request_id`` (other events and control frames skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                got = await self.recv()
                assert got.opcode != CLOSE, f"closed with {got.close_code}: {got.payload!r}"
                if got.opcode == TEXT and got.json().get("requestId") == request_id:
                    return got.json()

    async def closed_with(self, refused: str | None = None, timeout: float = 3) -> Frame:
        """The server's close frame (text frames before it skipped); ``refused`` is the
        ``requestId`` of a frame the server must not answer."""
        async with asyncio.timeout(timeout):
            while True:
                got = await self.recv()
                if got.opcode == CLOSE:
                    return got
                if refused is not None and got.opcode == TEXT:
                    assert got.json().get("requestId") != refused, f"answered: {got.json()}"

    async def eof(self, timeout: float = 3, *, reset_ok: bool = False) -> None:
        """The server closes TCP, sending nothing after its close frame; ``reset_ok``: a reset
        counts too (a server refusing an oversized frame may cut with bytes still unread)."""
        try:
            async with asyncio.timeout(timeout):
                assert await self.reader.read(1) == b"", "bytes after the close frame"
        except ConnectionResetError:
            assert reset_ok, "the connection was reset, not closed"

    async def close(self, code: int = 1000) -> None:
        """Answer the server's close frame (RFC 6455 5.5.1)."""
        await self.send(frame(CLOSE, close_payload(code)))

    def abort(self) -> None:
        self.writer.transport.abort()


async def upgrade(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    port: int,
    ticket: str,
    extra: str = "",
) -> tuple[str, dict[str, str], bytes]:
    """Send the opening handshake; ``(status line, headers, key)`` of the answer."""
    key = base64.b64encode(os.urandom(16))
    writer.write(
        f"GET /v1/vstudio/ws?ticket={ticket} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n".encode()
    )
    await writer.drain()
    status, headers = await read_head(reader)
    return status, headers, key


async def read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    """An HTTP response's status line and headers (names lower-cased)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in filter(None, lines):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def assert_switched(status: str, headers: dict[str, str], key: bytes) -> None:
    assert status.startswith("HTTP/1.1 101 "), status
    assert headers["upgrade"].lower() == "websocket", headers
    assert "upgrade" in headers["connection"].lower(), headers
    assert headers["sec-websocket-accept"] == accept_of(key), headers


async def a_ticket(server: LiveServer, session_id: str | None = None) -> str:
    session_id = session_id or (await server.live_session())["id"]
    return await server.ticket(server.token(user()), session_id)


async def ticket_on(
    server: LiveServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> str:
    """``POST /v1/vstudio/ticket`` on this connection, kept alive for the upgrade after it."""
    session = await server.live_session()
    body = orjson.dumps({"sessionId": session["id"], "role": "viewer"})
    writer.write(
        f"POST /v1/vstudio/ticket HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {server.token(user())}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    status, headers = await read_head(reader)
    assert status.startswith("HTTP/1.1 200 "), status
    assert headers.get("connection", "").lower() != "close", headers
    return str(orjson.loads(await reader.readexactly(int(headers["content-length"])))["ticket"])


WAYS = ["first-request", "after-a-ticket"]
"""How a test's connection upgrades: as its first request (a browser; the server's guard takes
it) or after ``POST /v1/vstudio/ticket`` on the same connection (our Python client; through
aiohttp's route). Both end in the same protocol, and must behave the same."""


async def connect(server: LiveServer, session_id: str | None = None, way: str = WAYS[0]) -> Raw:
    """A raw connection past the handshake and its first frame, ``session.state``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    if way == "after-a-ticket":
        assert session_id is None
        ticket = await ticket_on(server, reader, writer)
    else:
        ticket = await a_ticket(server, session_id)
    status, headers, key = await upgrade(reader, writer, server.port, ticket)
    assert_switched(status, headers, key)
    conn = Raw(reader, writer)
    first = await conn.recv()
    assert first.opcode == TEXT and first.fin, first
    assert first.json()["type"] == "session.state"
    return conn


# 1. The opening handshake


@pytest.mark.parametrize("offer", ["", "Sec-WebSocket-Extensions: permessage-deflate\r\n"])
async def test_handshake_is_http11_101_with_the_accept_key_and_no_extension(
    live_server: LiveServer, offer: str
) -> None:
    ticket = await a_ticket(live_server)
    reader, writer = await asyncio.open_connection("127.0.0.1", live_server.port)
    status, headers, key = await upgrade(reader, writer, live_server.port, ticket, offer)
    assert_switched(status, headers, key)
    assert "sec-websocket-extensions" not in headers  # compression is never negotiated
    conn = Raw(reader, writer)
    assert (await conn.recv()).json()["type"] == "session.state"
    await conn.send(frame(TEXT, ping_message("r1")))
    assert (await conn.reply("r1"))["type"] == "pong"
    conn.abort()


async def test_upgrade_as_the_second_request_of_a_keep_alive_connection(
    live_server: LiveServer,
) -> None:
    """``POST /v1/vstudio/ticket`` then the upgrade on the same connection, as our Python client
    and bench/reconnect.py connect."""
    reader, writer = await asyncio.open_connection("127.0.0.1", live_server.port)
    ticket = await ticket_on(live_server, reader, writer)
    status, headers, key = await upgrade(reader, writer, live_server.port, ticket)
    assert_switched(status, headers, key)
    assert "sec-websocket-extensions" not in headers
    conn = Raw(reader, writer)
    assert (await conn.recv()).json()["type"] == "session.state"
    await conn.send(frame(TEXT, ping_message("k1")))
    assert (await conn.reply("k1"))["type"] == "pong"
    await conn.send(frame(CLOSE, close_payload(1000)))
    assert (await conn.closed_with()).close_code == 1000
    await conn.eof()


async def reply_of(ws: ClientConnection, request_id: str) -> dict[str, Any]:
    """The frame answering ``request_id`` (presence and other events skipped)."""
    async with asyncio.timeout(5):
        while True:
            data: dict[str, Any] = orjson.loads(await ws.recv())
            if data.get("requestId") == request_id:
                return data


async def test_the_websockets_package_as_an_independent_client(live_server: LiveServer) -> None:
    """A second implementation: it offers permessage-deflate, fragments, pings, closes."""
    ticket = await a_ticket(live_server)
    url = f"{live_server.ws_url}?ticket={ticket}"
    async with websockets_connect(url, proxy=None, ping_interval=None) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert orjson.loads(await ws.recv())["type"] == "session.state"
        await ws.send(orjson.dumps({"type": "ping", "requestId": "w1"}).decode())
        assert (await reply_of(ws, "w1"))["type"] == "pong"
        await ws.send(['{"type":"ping",', '"requestId":', '"w2"}'])  # three fragments
        assert (await reply_of(ws, "w2"))["type"] == "pong"
        await asyncio.wait_for(await ws.ping(b"hello"), 5)
    assert ws.close_code == 1000


# 2. Messages, fragments and control frames


async def test_a_text_ping_gets_a_pong_reply(live_server: LiveServer) -> None:
    conn = await connect(live_server)
    await conn.send(frame(TEXT, ping_message("r1")))
    reply = await conn.reply("r1")
    assert reply["type"] == "pong" and reply["requestId"] == "r1"
    conn.abort()


def fragments(data: bytes, parts: int = 3) -> list[bytes]:
    """``data`` cut into ``parts`` non-empty pieces."""
    step = -(-len(data) // parts)
    return [data[i : i + step] for i in range(0, len(data), step)]


@pytest.mark.parametrize("control", [None, b"", b"are you there?", b"x" * 125])
async def test_a_fragmented_message_is_answered_with_a_ping_between_fragments(
    live_server: LiveServer, control: bytes | None
) -> None:
    """TEXT fin=0, CONT fin=0, CONT fin=1; with ``control``, a PING between the first two is
    answered by a PONG with the same payload and the message is still answered."""
    conn = await connect(live_server)
    first, middle, last = fragments(ping_message("r1"))
    frames = [frame(TEXT, first, fin=False)]
    if control is not None:
        frames.append(frame(PING, control))
    frames += [frame(CONT, middle, fin=False), frame(CONT, last)]
    await conn.send(*frames)
    pong: Frame | None = None
    reply: dict[str, Any] | None = None
    async with asyncio.timeout(5):
        while reply is None or (control is not None and pong is None):
            got = await conn.recv()
            assert got.opcode != CLOSE, got
            if got.opcode == PONG:
                assert pong is None, "two pongs for one ping"
                pong = got
            elif got.opcode == TEXT and got.json().get("requestId") == "r1":
                reply = got.json()
    assert reply["type"] == "pong"
    if control is not None:
        assert pong is not None and pong.fin and pong.payload == control
    conn.abort()


async def test_an_unsolicited_pong_is_ignored(live_server: LiveServer) -> None:
    conn = await connect(live_server)
    await conn.send(frame(PONG, b"nobody asked"), frame(TEXT, ping_message("r1")))
    assert (await conn.reply("r1"))["type"] == "pong"
    conn.abort()


async def test_valid_utf8_split_across_fragments_is_accepted(live_server: LiveServer) -> None:
    conn = await connect(live_server)
    data = ping_message("r-\u20ac-\U0001f600")  # a 3-byte and a 4-byte character
    cut = data.index("\u20ac".encode()) + 1  # inside the euro sign
    emoji = data.index("\U0001f600".encode()) + 2  # inside the emoji
    await conn.send(
        frame(TEXT, data[:cut], fin=False),
        frame(CONT, data[cut:emoji], fin=False),
        frame(CONT, data[emoji:]),
    )
    assert (await conn.reply("r-\u20ac-\U0001f600"))["type"] == "pong"
    conn.abort()


# 3. Buffering: a frame in pieces, frames together


async def test_a_frame_written_one_byte_at_a_time_is_answered(live_server: LiveServer) -> None:
    conn = await connect(live_server)
    for byte in frame(TEXT, ping_message("slow")):
        await conn.send(bytes([byte]))
        await asyncio.sleep(0.003)
    assert (await conn.reply("slow"))["type"] == "pong"
    conn.abort()


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("count", [5, 300])
async def test_frames_in_one_write_are_answered_in_order(
    live_server: LiveServer, count: int, way: str
) -> None:
    """300 is past what the server reads ahead of its handler (32 messages): it stops reading
    the socket until the handler catches up, then reads again, and loses nothing (pings are
    not rate limited)."""
    conn = await connect(live_server, way=way)
    ids = [f"r{n}" for n in range(count)]
    await conn.send(*(frame(TEXT, ping_message(rid)) for rid in ids))
    await asyncio.sleep(0.2)
    await conn.send(frame(TEXT, ping_message("after")))  # read only if reading resumed
    seen: list[str] = []
    async with asyncio.timeout(10):
        while len(seen) < len(ids) + 1:
            got = await conn.recv()
            assert got.opcode == TEXT, got
            if got.json()["type"] == "pong":
                seen.append(got.json()["requestId"])
    assert seen == [*ids, "after"]
    conn.abort()


# 4. Payload lengths at the borders of the length encodings


@pytest.mark.parametrize("size", [125, 126, 127, MAX_MESSAGE_BYTES])
async def test_payload_lengths_at_the_7_and_16_bit_borders(
    live_server: LiveServer, size: int
) -> None:
    """7-bit length up to 125, 16-bit from 126; the message limit itself is accepted."""
    conn = await connect(live_server)
    await conn.send(frame(TEXT, ping_message(f"s{size}", size)))
    assert (await conn.reply(f"s{size}"))["type"] == "pong"
    conn.abort()


async def test_payload_lengths_at_the_64_bit_border(server_factory: ServerFactory) -> None:
    """65535 is the largest 16-bit length, 65536 the smallest 64-bit one: a server whose limit
    is above both answers each (the default limit is 4096)."""
    server = server_factory(VSTUDIO_MAX_MESSAGE_BYTES="70000")
    conn = await connect(server)
    for size in (65535, 65536, 70000):
        await conn.send(frame(TEXT, ping_message(f"s{size}", size)))
        assert (await conn.reply(f"s{size}"))["type"] == "pong"
    conn.abort()


# 5. Protocol errors: a close frame with the RFC's code, then TCP closes

BAD = "bad"
"""The ``requestId`` of the refused frame in each case: the server must not answer it."""
PROTOCOL_ERRORS = [
    pytest.param(
        [frame(TEXT, ping_message(BAD), masked=False)],
        1002,
        id="unmasked-client-frame",
    ),
    pytest.param([frame(TEXT, ping_message(BAD), rsv1=True)], 1002, id="rsv1-without-extension"),
    pytest.param([frame(0x3, ping_message(BAD))], 1002, id="reserved-opcode-0x3"),
    pytest.param([frame(0xB, b"")], 1002, id="reserved-control-opcode-0xB"),
    pytest.param([frame(CONT, ping_message(BAD))], 1002, id="continuation-without-a-message"),
    pytest.param(
        [frame(TEXT, b'{"type":', fin=False), frame(TEXT, ping_message(BAD))],
        1002,
        id="text-while-a-fragmented-message-is-open",
    ),
    pytest.param(
        [frame(TEXT, b'{"type":', fin=False), frame(BINARY, b"x", fin=False)],
        1002,
        id="binary-fin0-while-a-fragmented-message-is-open",
    ),
    pytest.param([frame(PING, b"x", fin=False)], 1002, id="fragmented-ping"),
    pytest.param([frame(PING, b"x" * 126)], 1002, id="ping-with-126-byte-payload"),
    pytest.param(
        [frame(TEXT, b'{"type":"ping","requestId":"bad","x":"\xff"}')],
        1007,
        id="invalid-utf8-text",
    ),
    pytest.param(
        [
            frame(TEXT, b'{"type":"ping","requestId":"bad","x":"\xe2', fin=False),
            frame(CONT, b'\x82"}'),  # a 3-byte character cut short by the next bytes
        ],
        1007,
        id="invalid-utf8-across-fragments",
    ),
    pytest.param([frame(CLOSE, b"\x03")], 1002, id="close-with-1-byte-payload"),
    pytest.param(
        [frame(CLOSE, close_payload(1000, b"\xff\xfe"))], 1007, id="close-reason-invalid-utf8"
    ),
    *(
        pytest.param([frame(CLOSE, close_payload(code))], 1002, id=f"close-code-{code}")
        for code in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000)
    ),
]


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(("frames", "code"), PROTOCOL_ERRORS)
async def test_a_protocol_error_closes_with_the_rfc_code(
    live_server: LiveServer, frames: list[bytes], code: int, way: str
) -> None:
    conn = await connect(live_server, way=way)
    await conn.send(*frames)
    closing = await conn.closed_with(refused=BAD)
    assert closing.close_code == code, closing
    await conn.eof()


# 6. The closing handshake


@pytest.mark.parametrize("way", WAYS)
async def test_a_client_close_is_answered_then_tcp_closes(
    live_server: LiveServer, way: str
) -> None:
    conn = await connect(live_server, way=way)
    await conn.send(frame(CLOSE, close_payload(1000, b"bye")))
    closing = await conn.closed_with()
    assert closing.close_code == 1000 and closing.fin, closing
    await conn.eof()


@pytest.mark.parametrize("request_id", [None, "bye"])
async def test_session_leave_closes_1000(live_server: LiveServer, request_id: str | None) -> None:
    conn = await connect(live_server)
    leave: dict[str, Any] = {"type": "session.leave"}
    if request_id:
        leave["requestId"] = request_id
    await conn.send(frame(TEXT, orjson.dumps(leave)))
    if request_id:
        assert (await conn.reply(request_id))["type"] == "session.leave"
    assert (await conn.closed_with()).close_code == 1000
    await conn.close()
    await conn.eof()


# 7. Message size limits


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragments"])
async def test_a_message_over_the_hard_limit_closes_1009(
    live_server: LiveServer, fragmented: bool, way: str
) -> None:
    conn = await connect(live_server, way=way)
    data = ping_message(BAD, HARD_LIMIT + 1)
    if fragmented:  # each fragment under the limit, their sum over it
        half = len(data) // 2
        await conn.send(frame(TEXT, data[:half], fin=False), frame(CONT, data[half:]))
    else:
        await conn.send(frame(TEXT, data))
    closing = await conn.closed_with(refused=BAD)
    assert closing.close_code == 1009, closing
    await conn.eof(reset_ok=True)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("size", [MAX_MESSAGE_BYTES + 1, 65535])
async def test_a_message_over_max_message_bytes_is_error_4007_then_close_4007(
    live_server: LiveServer, size: int, way: str
) -> None:
    conn = await connect(live_server, way=way)
    await conn.send(frame(TEXT, ping_message(BAD, size)))
    async with asyncio.timeout(5):
        while (got := await conn.recv()).opcode == TEXT and got.json()["type"] != "error":
            pass
    assert got.opcode == TEXT, got
    assert got.json()["payload"]["code"] == ErrorCode.MESSAGE_TOO_LARGE
    closing = await conn.closed_with(refused=BAD)
    assert closing.close_code == ErrorCode.MESSAGE_TOO_LARGE, closing
    await conn.close(ErrorCode.MESSAGE_TOO_LARGE)  # echoed, as RFC 6455 5.5.1 suggests
    await conn.eof()


async def test_a_close_while_reading_is_paused_still_reads_the_clients_answer(
    live_server: LiveServer,
) -> None:
    """The refused frame comes with 100 more in one write, past the 32 read ahead, so reading
    is paused when the server closes; it must read again to see the client's close frame, and
    then end at once rather than after its 3 s wait."""
    conn = await connect(live_server)
    pings = [frame(TEXT, ping_message(f"p{n}")) for n in range(100)]
    await conn.send(frame(TEXT, ping_message(BAD, MAX_MESSAGE_BYTES + 1)), *pings)
    closing = await conn.closed_with(refused=BAD)
    assert closing.close_code == ErrorCode.MESSAGE_TOO_LARGE, closing
    await conn.close(ErrorCode.MESSAGE_TOO_LARGE)
    await conn.eof(timeout=1.5)


# 8. Binary frames


async def test_a_binary_frame_is_read_as_a_text_one(live_server: LiveServer) -> None:
    """Pinned: a BINARY frame holding a JSON ping is answered as if it were TEXT (and the reply
    is a TEXT frame, as every frame the server sends)."""
    conn = await connect(live_server)
    await conn.send(frame(BINARY, ping_message("b1")))
    assert (await conn.reply("b1"))["type"] == "pong"
    conn.abort()


# 10. Clients that vanish


def reset(conn: Raw) -> None:
    """Close with SO_LINGER 0: the peer sees a TCP reset."""
    sock: socket.socket = conn.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.writer.close()


@pytest.mark.parametrize("how", ["reset", "fin", "reset-mid-frame", "fin-mid-fragments"])
async def test_a_vanished_client_leaves_the_server_healthy(
    live_server: LiveServer, how: str
) -> None:
    session = await live_server.live_session()
    gone = await connect(live_server, session["id"])
    data = frame(TEXT, ping_message("lost", 300))
    if how == "reset-mid-frame":
        await gone.send(data[:100])
    elif how == "fin-mid-fragments":
        await gone.send(frame(TEXT, b'{"type":', fin=False))
    if how.startswith("reset"):
        reset(gone)
    else:
        gone.writer.close()  # TCP closed without a close frame
    await asyncio.sleep(0.1)
    other = await connect(live_server, session["id"])
    await other.send(frame(TEXT, ping_message("still")))
    assert (await other.reply("still"))["type"] == "pong"
    await other.send(frame(CLOSE, close_payload(1000)))
    assert (await other.closed_with()).close_code == 1000
    await other.eof()
