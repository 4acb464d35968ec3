"""Slow requests end and unfinished connections per address are capped: raw sockets on
loopback against a live server (issue 13)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest

from server.guard import PendingConnections
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory

pytestmark = pytest.mark.slow

HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


def raw(server: LiveServer, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", server.port), timeout=10, source_address=(source, 0)
    )
    return sock


def closed_after(sock: socket.socket, every: float, line: bytes, limit: float) -> float:
    """Send ``line`` every ``every`` s until the server closes; seconds it took (or ``limit``)."""
    started = time.monotonic()
    sock.settimeout(every)
    while time.monotonic() - started < limit:
        try:
            sock.sendall(line)
            if sock.recv(4096) == b"":
                break
        except TimeoutError:
            continue
        except OSError:  # reset by the server
            break
    return time.monotonic() - started


def read_response(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_a_slowloris_head_is_cut_after_the_header_timeout(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_HEADER_TIMEOUT="2")
    with raw(server) as sock:
        sock.sendall(HEAD)
        took = closed_after(sock, 0.5, b"X-Slow: 1\r\n", limit=15)
    assert 1.5 <= took < 5, took


def test_a_slow_second_head_on_a_kept_alive_connection_is_cut_too(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(VSTUDIO_HEADER_TIMEOUT="2")
    with raw(server) as sock:
        sock.sendall(HEAD + b"\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(HEAD)
        took = closed_after(sock, 0.5, b"X-Slow: 1\r\n", limit=15)
    assert took < 5, took


def test_a_slow_body_is_answered_408(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_BODY_TIMEOUT="1")
    with raw(server) as sock:
        sock.sendall(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 200\r\n\r\n{"username": '
        )
        started = time.monotonic()
        answer = read_response(sock)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert took < 5, took


def test_unfinished_connections_from_one_address_are_capped(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_MAX_PENDING_CONNECTIONS_PER_ADDRESS="3")
    held = [raw(server, "127.0.0.4") for _ in range(3)]
    try:
        time.sleep(0.3)
        with raw(server, "127.0.0.4") as fourth:
            answer = read_response(fourth)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        with raw(server, "127.0.0.5") as elsewhere:  # another address is not affected
            elsewhere.sendall(HEAD + b"\r\n")
            assert read_response(elsewhere).startswith(b"HTTP/1.1 200")
        held[0].sendall(HEAD + b"\r\n")  # a finished request no longer counts as pending
        assert read_response(held[0]).startswith(b"HTTP/1.1 200")
        with raw(server, "127.0.0.4") as next_one:
            next_one.sendall(HEAD + b"\r\n")
            assert read_response(next_one).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    with raw(server, "127.0.0.4") as after:  # closed ones gave their places back
        after.sendall(HEAD + b"\r\n")
        assert read_response(after).startswith(b"HTTP/1.1 200")


class Recorder(asyncio.Protocol):
    """The protocol behind the guard: what it was given."""

    def __init__(self) -> None:
        self.data = b""
        self.lost = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(True)


async def test_the_guard_steps_aside_once_the_first_head_is_in() -> None:
    """The server's protocol is made only once the first head is in, and gets every byte; after
    it nothing is left to watch: later bytes (a WebSocket's frames) go to that protocol
    directly, and the address no longer counts as pending."""
    pending = PendingConnections(max_pending=1, header_timeout=1.0)
    inner: list[Recorder] = []

    def factory() -> asyncio.Protocol:
        inner.append(Recorder())
        return inner[-1]

    server = await asyncio.get_running_loop().create_server(pending.wrap(factory), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD)
        await asyncio.sleep(0.1)
        assert pending.by_address["127.0.0.1"] == 1  # the head is not complete yet
        assert inner == []  # no protocol of the server's made for it yet
        writer.write(b"\r\nframes after the head")
        await asyncio.sleep(0.1)
        transport = inner[0].transport
        assert transport is not None and transport.get_protocol() is inner[0]
        assert "127.0.0.1" not in pending.by_address
        await asyncio.sleep(1.2)  # past the header timeout: nothing cuts the connection now
        writer.write(b" and more")
        await asyncio.sleep(0.1)
        assert inner[0].data == HEAD + b"\r\nframes after the head and more"
        writer.close()
        assert await asyncio.wait_for(inner[0].lost, 5)
    finally:
        server.close()
        await server.wait_closed()


class Front:
    """Takes the connections whose first request is to /take, and answers them itself."""

    def __init__(self) -> None:
        self.offered: list[tuple[bytes, bytes, str]] = []

    def take(
        self,
        transport: asyncio.Transport,
        head: bytes,
        rest: bytes,
        remote: str,
        later: Callable[[bytes], None],
    ) -> bool:
        self.offered.append((head, rest, remote))
        if not head.startswith(b"GET /take "):
            return False
        transport.write(b"taken")
        transport.close()
        return True


async def test_the_guard_offers_the_first_head_to_the_front_first() -> None:
    """What the front takes never reaches the server's protocol (none is made); what it leaves
    does, whole, as if the front were not there. The front sees the head without its blank
    line, the bytes after it, and the peer's address."""
    pending = PendingConnections(max_pending=4, header_timeout=5.0)
    front = Front()
    inner: list[Recorder] = []

    def factory() -> asyncio.Protocol:
        inner.append(Recorder())
        return inner[-1]

    server = await asyncio.get_running_loop().create_server(
        pending.wrap(factory, front), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /take HTTP/1.1\r\nHost: x\r\n")
        writer.write(b"\r\nafter")
        assert await asyncio.wait_for(reader.read(), 5) == b"taken"
        assert front.offered == [(b"GET /take HTTP/1.1\r\nHost: x", b"after", "127.0.0.1")]
        assert inner == []

        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD + b"\r\nbody")
        await asyncio.sleep(0.2)
        assert front.offered[-1] == (HEAD[:-2], b"body", "127.0.0.1")
        assert len(inner) == 1 and inner[0].data == HEAD + b"\r\nbody"
        writer.close()
        assert not pending.by_address  # both heads ended: nothing counts as pending
    finally:
        server.close()
        await server.wait_closed()


async def test_a_head_sent_a_byte_at_a_time_reaches_the_front_whole() -> None:
    """Pieces are gathered (the end may straddle two of them) and nothing is lost or doubled."""
    pending = PendingConnections(max_pending=4, header_timeout=10.0)
    front = Front()
    server = await asyncio.get_running_loop().create_server(
        pending.wrap(Recorder, front), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    head = b"GET /take HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 300
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        for byte in head + b"\r\n\r":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.write(b"\nrest")  # the head's end straddles two pieces
        assert await asyncio.wait_for(reader.read(), 5) == b"taken"
        assert front.offered == [(head, b"rest", "127.0.0.1")]
    finally:
        server.close()
        await server.wait_closed()
