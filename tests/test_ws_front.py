"""Upgrades that come first on their connection are served without aiohttp
(``server/front.py``): the head is read as aiohttp would route it, and anything not
plainly a valid upgrade is left to aiohttp."""

from __future__ import annotations

import asyncio
import base64
import os

import orjson
import pytest
from websockets.frames import Frame, Opcode

from server.front import read_head, ws_session
from tests.support.live_server import LiveServer


def test_a_head_is_read_into_method_target_and_headers() -> None:
    head = (
        b"GET /v1/vstudio/ws?ticket=T HTTP/1.1\r\nHost: x\r\nupgrade:  websocket \r\nX: 1\r\nx: 2"
    )
    read = read_head(head)
    assert read is not None
    method, target, headers = read
    assert (method, target) == ("GET", "/v1/vstudio/ws?ticket=T")
    assert headers["Upgrade"] == "websocket"  # any case, value stripped
    assert headers.getall("X") == ["1", "2"]


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/vstudio/ws HTTP/1.0\r\nHost: x",  # not HTTP/1.1
        b"GET  /v1/vstudio/ws HTTP/1.1\r\nHost: x",  # two spaces
        b"GET /v1/vstudio/ws HTTP/1.1\r\nHost: x\r\n folded",  # obsolete line folding
        b"GET /v1/vstudio/ws HTTP/1.1\r\nHost x",  # no colon
        b"GET /v1/vstudio/ws HTTP/1.1\r\nHo st: x",  # a space in the name
        b"GET /v1/vstudio/ws HTTP/1.1\r\n\xc3\xa9: x",  # a name that is not ASCII
        "GET /v1/vstudio/ws/é HTTP/1.1\r\nHost: x".encode(),  # a target that is not ASCII
        b"GET /v1/vstudio/ws HTTP/1.1\r\nX: " + b"a" * 8190,  # a line past aiohttp's limit
        b"GET /v1/vstudio/ws?t=" + b"a" * 8190 + b" HTTP/1.1\r\nHost: x",  # the request line
        b"GET /v1/vstudio/ws HTTP/1.1" + b"\r\nX: 1" * 129,  # more headers than aiohttp takes
    ],
)
def test_a_head_that_is_not_plainly_http_1_1_is_left_to_aiohttp(head: bytes) -> None:
    assert read_head(head) is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/v1/vstudio/ws", (True, None)),
        ("/v1/vstudio/ws?ticket=a/b", (True, None)),
        ("/v1/vstudio/ws/s1?role=viewer", (True, "s1")),
        ("/v1/vstudio/ws/a%20b", (True, "a b")),  # decoded, as aiohttp's match_info
        ("/v1/vstudio/ws/", (False, None)),
        ("/v1/vstudio/ws/a/b", (False, None)),
        ("/v1/vstudio/wsx", (False, None)),
        ("/v1/vstudio/sse", (False, None)),
    ],
)
def test_only_the_websocket_routes_are_taken(
    target: str, expected: tuple[bool, str | None]
) -> None:
    assert ws_session(target) == expected


async def test_frames_sent_with_the_upgrade_are_read(live_server: LiveServer) -> None:
    """A client must wait for the 101 (RFC 6455 section 4.1); one that does not still has the
    frames it sent with its head read, as the guard holds every byte of the connection."""
    session = await live_server.live_session()
    ticket = await live_server.ticket(live_server.token("early"), session["id"])
    key = base64.b64encode(os.urandom(16))
    ping = orjson.dumps({"type": "ping", "requestId": "early-1"})
    reader, writer = await asyncio.open_connection("127.0.0.1", live_server.port)
    writer.write(
        f"GET /v1/vstudio/ws?ticket={ticket} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        + b"Sec-WebSocket-Key: "
        + key
        + b"\r\n\r\n"
        + Frame(Opcode.TEXT, ping).serialize(mask=True)
    )
    try:
        async with asyncio.timeout(10):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
            received = b""
            while b'"requestId":"early-1"' not in received:
                more = await reader.read(65536)
                assert more, "the server closed the connection"
                received += more
    finally:
        writer.close()
