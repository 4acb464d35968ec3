"""Several server processes on one Redis, slow clients, draining and resume."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

from broker import Bus, connect
from broker.bus import OutgoingEvent
from broker.models import ErrorCode
from server.serve import bind_socket
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory
from tests.support.websocket import closed_with, receive_type

pytestmark = pytest.mark.slow


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def test_two_servers_share_a_session(server_factory: ServerFactory, bus: Bus) -> None:
    one = server_factory()
    two = server_factory()
    session = await one.live_session()
    sid = session["id"]
    async with (
        one.ws(sid, "a") as a,
        two.ws(sid, "b") as b,
        two.ws(sid, session["artistId"], "artist") as artist,
    ):
        for ws in (a, b, artist):
            await receive_type(ws, "session.state")
        _, body = await one.call("GET", f"/v1/vstudio/sessions/{sid}")
        assert body["viewerCount"] == 3
        event_id = await bus.publish(sid, "events", "tip.received", {"amount": 1})
        for ws in (a, b, artist):
            assert (await receive_type(ws, "tip.received"))["id"] == event_id
        await artist.send_json({"type": "session.end", "requestId": "bye", "payload": {}})
        for ws in (a, b):
            end = await receive_type(ws, "session.end")
            assert end["payload"]["endedBy"] == session["artistId"]
            assert await closed_with(ws) == ErrorCode.SESSION_ENDED
    status, body = await two.call(
        "POST", "/v1/vstudio/ticket", token=two.token("late"), json={"sessionId": sid}
    )
    assert status == 409 and body["code"] == ErrorCode.SESSION_ENDED


async def test_workers_share_one_port(server_factory: ServerFactory) -> None:
    server = server_factory(workers=2)
    processes = set()
    for _ in range(40):
        _, body = await server.call("GET", "/healthz")
        processes.add(body["pid"])
        if len(processes) == 2:
            break
    assert len(processes) == 2
    session = await server.live_session()
    clients = [server.ws(session["id"], f"v{n}") for n in range(6)]
    sockets = [await client.__aenter__() for client in clients]
    try:
        for ws in sockets:
            await receive_type(ws, "session.state")
        _, body = await server.call("GET", f"/v1/vstudio/sessions/{session['id']}")
        assert body["viewerCount"] == 6
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)
    code, _, err = server.stop()
    assert code == 0 and "Traceback" not in err, err


def test_listeners_queue_clients_before_their_workers_accept() -> None:
    """The parent makes each worker's listener before starting it (the first one as soon as it
    knows the port): a client that connects while the workers still start is queued, not
    refused (it would wait a whole backoff step)."""
    first = bind_socket("127.0.0.1", 0)
    port = int(first.getsockname()[1])
    second = bind_socket("127.0.0.1", port)
    try:
        for sock in (first, second):
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        for _ in range(4):
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass  # in a listener's queue, though nothing has called accept yet
    finally:
        for sock in (first, second):
            sock.close()


def _workers(pid: int) -> list[int]:
    """The worker processes of server ``pid`` (not multiprocessing's resource tracker)."""
    children = [int(n) for n in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [
        n for n in children if b"resource_tracker" not in Path(f"/proc/{n}/cmdline").read_bytes()
    ]


def _listeners_held(pid: int, port: int) -> int:
    """How many sockets listening on ``port`` process ``pid`` holds (from /proc)."""
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            listening.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            held += os.readlink(fd) in listening
        except OSError:  # closed meanwhile
            continue
    return held


linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


@linux_only
def test_each_worker_holds_its_own_listener_and_no_other(server_factory: ServerFactory) -> None:
    """A worker holding a sibling's listener would keep that queue open after the sibling died,
    and the kernel would go on putting clients there that nobody accepts."""
    server = server_factory(workers=3)
    workers = _workers(server.process.pid)
    assert len(workers) == 3
    assert [_listeners_held(pid, server.port) for pid in workers] == [1, 1, 1]
    assert _listeners_held(server.process.pid, server.port) == 0


@linux_only
async def test_clients_are_served_when_a_worker_was_killed(server_factory: ServerFactory) -> None:
    server = server_factory(workers=2)
    os.kill(max(_workers(server.process.pid)), signal.SIGKILL)  # the last one started
    await asyncio.sleep(0.5)
    for _ in range(30):  # new connections, spread by the kernel over what still listens
        status, _ = await asyncio.wait_for(server.call("GET", "/healthz"), 5)
        assert status == 200


@linux_only
def test_workers_that_are_still_starting_stop_on_sigterm(tmp_path: Path) -> None:
    """The parent forwards SIGTERM to its workers; one still starting (here: waiting for a
    Redis that accepts the connection and never answers) must stop too, or shutdown hangs."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        env = {
            **os.environ,
            "VSTUDIO_REDIS_URL": f"redis://127.0.0.1:{silent.getsockname()[1]}",
            "VSTUDIO_JWT_SECRET": LiveServer.SECRET,
            "VSTUDIO_DATA_DIR": str(tmp_path),
        }
        command = [sys.executable, "-m", "vstudio_cli.main", "serve", "--port", "0"]
        server = subprocess.Popen(
            [*command, "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 20
            while len(_workers(server.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # past their start, into the wait for Redis
            assert server.poll() is None
            server.send_signal(signal.SIGTERM)
            server.wait(10)
        finally:
            server.kill()
            server.wait()
            assert server.stderr is not None
            server.stderr.close()


async def raw_ws(server: LiveServer, ticket: str) -> socket.socket:
    """A WebSocket that completes the handshake and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /v1/vstudio/ws?ticket={ticket} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await asyncio.to_thread(sock.recv, 1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return sock


@pytest.mark.parametrize("chunk", ["256", "1"], ids=["written-at-once", "walker"])
async def test_a_client_that_never_reads_is_dropped_without_delaying_others(
    server_factory: ServerFactory, bus: Bus, chunk: str
) -> None:
    server = server_factory(VSTUDIO_SEND_BUFFER_LIMIT="1048576", VSTUDIO_FANOUT_CHUNK=chunk)
    session = await server.live_session()
    sid = session["id"]
    stuck = await raw_ws(server, await server.ticket(server.token("stuck"), sid))
    try:
        async with server.ws(sid, "fast") as fast:
            await receive_type(fast, "session.state")
            blob = "x" * 50_000
            loop = asyncio.get_running_loop()
            started = loop.time()
            got: list[int] = []

            async def read_all() -> None:
                while len(got) < 200:
                    frame = await receive_type(fast, "tip.received", timeout=10)
                    got.append(frame["payload"]["n"])

            reader = asyncio.create_task(read_all())
            for n in range(200):  # 10 MB, past the kernel's buffers (4 MB) and the limit
                await bus.publish(sid, "events", "tip.received", {"n": n, "blob": blob})
            await asyncio.wait_for(reader, 10)
            assert got == list(range(200))
            assert loop.time() - started < 5
        _, metrics = await server.call("GET", "/metrics")
        assert 'ws_errors_total{reason="slow_client"} 1.0' in metrics
        stuck.setblocking(False)
        await asyncio.sleep(0.2)
        with pytest.raises(OSError):
            # the server has cut it: reading ends in a reset or EOF, after what the kernel still
            # held (~3 MB here, and with a 4 KB receive buffer recv() may return 2 KB at a time)
            for _ in range(10_000):
                if not await asyncio.to_thread(_read_some, stuck):
                    raise ConnectionResetError("eof")
    finally:
        stuck.close()


async def test_an_sse_client_that_never_reads_is_cut_and_uncounted(
    server_factory: ServerFactory, bus: Bus
) -> None:
    server = server_factory(VSTUDIO_SEND_BUFFER_LIMIT="1048576")
    session = await server.live_session()
    sid = session["id"]
    stuck = socket.create_connection(("127.0.0.1", server.port))
    token = server.token("stuck-sse")
    stuck.sendall(
        f"GET /v1/vstudio/sse/{sid} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    try:
        async with server.ws(sid, "fast") as fast:
            await receive_type(fast, "session.state")
            blob = "x" * 50_000
            got: list[int] = []

            async def read_all() -> None:
                while len(got) < 200:
                    got.append((await receive_type(fast, "tip.received"))["payload"]["n"])

            reader = asyncio.create_task(read_all())
            for n in range(200):  # 10 MB that the SSE client never reads
                await bus.publish(sid, "events", "tip.received", {"n": n, "blob": blob})
            await asyncio.wait_for(reader, 10)
            assert got == list(range(200))
            for _ in range(50):
                _, body = await server.call("GET", f"/v1/vstudio/sessions/{sid}")
                if body["viewerCount"] == 1:
                    break
                await asyncio.sleep(0.1)
            assert body["viewerCount"] == 1
        _, metrics = await server.call("GET", "/metrics")
        assert 'ws_errors_total{reason="slow_client"} 1.0' in metrics
        with pytest.raises(OSError):
            for _ in range(10_000):  # the server has cut it: reading ends in a reset or EOF
                if not await asyncio.to_thread(_read_some, stuck):
                    raise ConnectionResetError("eof")
    finally:
        stuck.close()


def _read_some(sock: socket.socket) -> bytes:
    sock.setblocking(True)
    sock.settimeout(2)
    return sock.recv(1 << 20)


async def test_sigterm_drains_with_1012_and_keeps_every_acknowledged_message(
    server_factory: ServerFactory, redis_url: str
) -> None:
    server = server_factory(VSTUDIO_CHAT_RATE_LIMIT="1000", VSTUDIO_MESSAGE_RATE_LIMIT="1000")
    session = await server.live_session()
    sid = session["id"]
    acked: list[str] = []
    async with server.ws(sid, "a") as a, server.ws(sid, "b") as b:
        await receive_type(a, "session.state")
        await receive_type(b, "session.state")

        async def chatter() -> None:
            n = 0
            while True:
                await a.send_json(
                    {"type": "chat.message", "requestId": f"m{n}", "payload": {"text": f"m{n}"}}
                )
                n += 1
                await asyncio.sleep(0.005)

        async def read_acks() -> int | None:
            async for message in a:
                frame = orjson.loads(message.data)
                if frame["type"] == "chat.message" and "requestId" in frame:
                    acked.append(frame["payload"].get("message", {}).get("id", frame["requestId"]))
            return a.close_code

        sender = asyncio.create_task(chatter())
        reader = asyncio.create_task(read_acks())
        await asyncio.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        assert await closed_with(b, timeout=10) == 1012
        assert await asyncio.wait_for(reader, 10) == 1012
        sender.cancel()
    code, _, err = server.stop()
    assert code == 0 and "Traceback" not in err, err
    assert acked
    client = await connect(redis_url)
    try:
        replay = await Bus(client).replay(sid, "0-0")
    finally:
        await client.aclose()
    stored = orjson.dumps([event.payload for event in replay.events]).decode()
    missing = [ack for ack in acked if ack not in stored]
    assert not missing, missing[:5]


async def test_resume_with_since_misses_nothing_and_repeats_nothing(
    live_server: LiveServer, bus: Bus
) -> None:
    session = await live_server.live_session()
    sid = session["id"]
    first = await bus.publish(sid, "events", "tip.received", {"n": 0})
    async with live_server.ws(sid, "r") as ws:
        await receive_type(ws, "session.state")
        last_seen = (await receive_type(ws, "tip.received"))["id"] if False else None
    last_seen = first
    missed = [await bus.publish(sid, "events", "tip.received", {"n": n}) for n in range(1, 4)]
    chat = [OutgoingEvent("chat.message", {"id": f"twitch:r{n}", "text": "x"}) for n in range(3)]
    chat_ids = await bus.publish_many(sid, "chat", chat)
    async with live_server.ws(sid, "r", since=last_seen) as ws:
        state = await receive_type(ws, "session.state")
        assert state["payload"]["recovered"] is True
        tips = [await receive_type(ws, "tip.received") for _ in range(3)]
        assert [tip["id"] for tip in tips] == missed
        aggregate = await receive_type(ws, "chat.aggregate")
        assert aggregate["id"] == chat_ids[-1] and len(aggregate["payload"]["messages"]) == 3
        live = await bus.publish(sid, "events", "tip.received", {"n": 9})
        frame = await receive_type(ws, "tip.received")
        assert frame["id"] == live  # nothing repeated in between


async def test_resume_outside_the_window_says_not_recovered(
    live_server: LiveServer, redis_url: str
) -> None:
    session = await live_server.live_session()
    sid = session["id"]
    client = await connect(redis_url)
    try:
        small = Bus(client, history_size=10)
        old = await small.publish(sid, "events", "tip.received", {"n": -1})
        events = [OutgoingEvent("tip.received", {"n": n}) for n in range(600)]
        for start in range(0, 600, 100):
            await small.publish_many(sid, "events", events[start : start + 100])
    finally:
        await client.aclose()
    async with live_server.ws(sid, "late", since=old) as ws:
        state = await receive_type(ws, "session.state")
        assert state["payload"]["recovered"] is False
        assert state["payload"]["session"]["id"] == sid
        with pytest.raises(TimeoutError):
            await receive_type(ws, "tip.received", timeout=0.5)  # no partial replay


async def test_presence_events_and_viewer_count(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    sid = session["id"]
    async with live_server.ws(sid, "p1") as first:
        await receive_type(first, "session.state")
        async with live_server.ws(sid, "p2") as second:
            state = await receive_type(second, "session.state")
            assert state["payload"]["viewerCount"] == 2
            join = await receive_type(first, "session.join")
            while join["payload"]["userId"] != "p2":
                join = await receive_type(first, "session.join")
            assert join["payload"]["viewerCount"] == 2
            await second.send_json({"type": "session.leave", "payload": {}})
            assert await closed_with(second) == 1000
        leave = await receive_type(first, "session.leave")
        assert leave["payload"] == {
            "userId": "p2",
            "username": "p2",
            "role": "viewer",
            "viewerCount": 1,
        }


@pytest.mark.parametrize("since", ["yesterday", "123%0A", "99999999999999999999-0"])
async def test_invalid_since_is_4006(live_server: LiveServer, since: str) -> None:
    session = await live_server.live_session()
    ticket = await live_server.ticket(live_server.token(user()), session["id"])
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{live_server.ws_url}?ticket={ticket}&since={since}") as ws,
    ):
        assert await closed_with(ws) == ErrorCode.INVALID_MESSAGE


async def test_a_since_from_the_future_is_not_a_recovery(live_server: LiveServer, bus: Bus) -> None:
    """An id newer than anything in the history (another Redis, a lost AOF) must not hide
    the live events that follow: the client gets the present state instead."""
    session = await live_server.live_session()
    sid = session["id"]
    async with live_server.ws(sid, "future", since="9999999999999-0") as ws:
        state = await receive_type(ws, "session.state")
        assert state["payload"]["recovered"] is False
        await bus.publish(sid, "events", "tip.received", {"n": 1})
        assert (await receive_type(ws, "tip.received"))["payload"] == {"n": 1}
