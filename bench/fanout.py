"""Fan-out benchmark: N WebSocket viewers on one session, chat published through the bus.

Starts ``vstudio serve`` (or targets ``--url``), connects N viewers (cheap clients in a child
process that only count the bench's messages in the byte stream, plus a sample of aiohttp
clients that parse every frame and timestamp every message), publishes chat through the bus as
the ingestion workers do (``publish_many`` on the session's chat channel) at ``--rate`` for
``--duration`` seconds, and prints: connect time, delivery latency p50/p99/max, messages
delivered / expected, server CPU per connection per frame and per socket write (a client that
is behind gets several frames in one write), RSS per idle connection, and the floor measured in
the same run: a bare uvloop server writing pre-built bytes of the same size with
``transport.write`` to as many connections, as many times, at the same pace. ``server_vs_raw``
compares the server's whole-process CPU per write with the floor's CPU inside its write loop.

    python bench/fanout.py --viewers 1000
    python bench/fanout.py --viewers 10000 --rate 50 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import multiprocessing
import os
import signal
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson
from benchkit import (
    cpu_seconds,
    new_loop,
    raise_file_limit,
    rss_bytes,
    start_server,
)

from broker import Bus, connect
from broker.bus import OutgoingEvent
from broker.models import Role
from broker.runtime import redis_url as embedded_or_given
from config import BrokerSettings
from server.identity.auth import Identity, mint_token
from server.identity.tickets import TicketStore

MARKER = b"twitch:bench-"
SECRET = "bench-secret-bench-secret-bench-secret"
WS_KEY = base64.b64encode(b"0123456789abcdef").decode()
WS_ACCEPT = base64.b64encode(
    hashlib.sha1((WS_KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC11B85").encode()).digest()
)


# --- cheap clients (child process) ------------------------------------------------------------


class CheapClient(asyncio.Protocol):
    """Handshake, then count MARKER in the raw stream; answers pings with a masked pong."""

    def __init__(self, request: bytes, ready: asyncio.Future[bool]) -> None:
        self.request = request
        self.ready = ready
        self.head = b""
        self.open = False
        self.count = 0
        self.bytes = 0
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            ok = self.head.startswith(b"HTTP/1.1 101")
            data, self.head, self.open = self.head[end + 4 :], b"", ok
            if not self.ready.done():
                self.ready.set_result(ok)
        self.bytes += len(data)
        edge = self.tail + data[: len(MARKER) - 1]
        self.count += data.count(MARKER) + edge.count(MARKER)
        self.tail = data[-(len(MARKER) - 1) :]
        if b"\x89\x00" in data and self.transport is not None:  # a ping: pong, masked, empty
            self.transport.write(b"\x8a\x80\x00\x00\x00\x00")

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if not self.ready.done():
            self.ready.set_result(False)


async def _connect_all(
    host: str, port: int, paths: list[str], parallel: int = 200
) -> tuple[list[CheapClient], float]:
    loop = asyncio.get_running_loop()
    clients: list[CheapClient] = []
    gate = asyncio.Semaphore(parallel)

    async def one(path: str) -> None:
        async with gate:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            ready: asyncio.Future[bool] = loop.create_future()
            client = CheapClient(request, ready)
            try:
                await loop.create_connection(lambda: client, host, port)
                await asyncio.wait_for(ready, 60)
            except (OSError, TimeoutError):
                return
            clients.append(client)

    started = time.perf_counter()
    await asyncio.gather(*(one(path) for path in paths))
    return clients, time.perf_counter() - started


def cheap_clients_main(pipe: Connection) -> None:
    """Child process: obeys ``connect``/``report``/``close``/``quit`` commands on ``pipe``."""
    raise_file_limit()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        clients: list[CheapClient] = []
        while True:
            command, *args = await loop.run_in_executor(None, pipe.recv)
            if command == "connect":
                clients, seconds = await _connect_all(*args)
                pipe.send((sum(c.open for c in clients), seconds))
            elif command == "report":
                counts = [c.count for c in clients]
                received = sum(c.bytes for c in clients)
                pipe.send((sum(counts), received, sum(c.open for c in clients)))
            elif command == "close":
                for client in clients:
                    if client.transport is not None:
                        client.transport.close()
                clients = []
                await asyncio.sleep(0.5)
                pipe.send("closed")
            else:
                pipe.send("bye")
                return

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(serve())


# --- the floor: a bare server writing pre-built frames ---------------------------------------


class RawConnection(asyncio.Protocol):
    def __init__(self, registry: list[asyncio.Transport]) -> None:
        self.registry = registry
        self.head = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's

    def data_received(self, data: bytes) -> None:
        if self.head is None:
            return
        self.head += data
        if b"\r\n\r\n" in self.head:
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + WS_ACCEPT + b"\r\n\r\n"
            )
            self.registry.append(self.transport)
            self.head = None  # type: ignore[assignment]  # upgraded: no more headers to parse


def raw_server_main(pipe: Connection) -> None:
    """Child process: a bare server; ``broadcast`` measures CPU inside the write loops only."""
    raise_file_limit()

    async def serve() -> None:
        from server.wire import ws_text_frame

        loop = asyncio.get_running_loop()
        transports: list[asyncio.Transport] = []
        server = await loop.create_server(lambda: RawConnection(transports), "127.0.0.1", 0)
        pipe.send(server.sockets[0].getsockname()[1])
        while True:
            command, *args = await loop.run_in_executor(None, pipe.recv)
            if command != "broadcast":
                server.close()
                pipe.send("bye")
                return
            frames, size, interval = args
            cpu = 0.0
            writes = 0
            next_at = time.perf_counter()
            for n in range(frames):
                body = orjson.dumps({"type": "chat.aggregate", "n": n, "pad": ""})
                padded = body[:-2] + b"x" * max(0, size - len(body)) + b'"}'
                started = time.process_time()
                frame = ws_text_frame(padded)
                for transport in transports:
                    if not transport.is_closing():
                        transport.write(frame)
                        writes += 1
                cpu += time.process_time() - started
                next_at += interval  # broadcasts start on a fixed beat, as the server's rounds
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            pipe.send((cpu, writes))

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(serve())


# --- measuring the server process --------------------------------------------------------------


async def metric(base: str, name: str, processes: int = 1) -> float:
    """``name`` summed over the server's processes (each scrape reaches one of them)."""
    seen: dict[str, float] = {}
    for _ in range(20 * processes):
        async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as response:
            text = await response.text()
        process, value = "", 0.0
        for line in text.splitlines():
            if line.startswith("vstudio_process{"):
                process = line.split('"')[1]
            elif line.startswith(name + " "):
                value = float(line.split()[1])
        seen[process] = value
        if len(seen) >= processes:
            break
    return sum(seen.values())


# --- the run -----------------------------------------------------------------------------------


class Sample:
    """A parsing client: records publish-to-receipt delay of every bench message."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.count = 0
        self.frame_bytes: list[int] = []

    async def run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.time() * 1000
            frame = orjson.loads(message.data)
            if frame["type"] != "chat.aggregate":
                continue
            self.frame_bytes.append(len(message.data))
            for chat in frame["payload"]["messages"]:
                if chat["id"].startswith("twitch:bench-"):
                    self.count += 1
                    self.latencies.append(now - chat["timestamp"])


async def run(args: argparse.Namespace, redis: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vstudio-bench-"))
    process = None
    if args.url:
        base = args.url.rstrip("/")
        server_pid = args.server_pid
    else:
        heartbeat = {"VSTUDIO_HEARTBEAT_INTERVAL": str(args.heartbeat)} if args.heartbeat else {}
        process, base = start_server(redis, tmp, SECRET, workers=args.workers, **heartbeat)
        server_pid = process.pid
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    clients = context.Process(target=cheap_clients_main, args=(theirs,), daemon=True)
    clients.start()
    client = await connect(redis)
    bus = Bus(client)
    results: dict[str, Any] = {"viewers": args.viewers, "heartbeat_seconds": args.heartbeat or None}
    try:
        artist = f"bench-artist-{os.getpid()}-{int(time.time())}"
        token = mint_token(SECRET, user_id=artist, role="artist")
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(base + "/v1/vstudio/sessions", json={"title": "bench"}) as r:
                session = await r.json()
            async with http.post(f"{base}/v1/vstudio/sessions/{session['id']}/start") as r:
                assert r.status == 200, await r.text()
        sid = session["id"]
        tickets = TicketStore(client, ttl=600)
        sample_n = min(args.sample, args.viewers)
        cheap_n = args.viewers - sample_n
        paths = []
        for n in range(cheap_n):
            ticket = await tickets.issue(Identity(f"v{n}", f"v{n}", Role.VIEWER), sid, Role.VIEWER)
            paths.append(f"/v1/vstudio/ws?ticket={ticket}")
        await asyncio.sleep(1.0)
        rss_before = rss_bytes(server_pid) if server_pid else 0
        host, port = base.split("//", 1)[1].split(":")
        started = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(
            None, ours.send, ("connect", host, int(port), paths)
        )
        samples = [Sample() for _ in range(sample_n)]
        sessions = [aiohttp.ClientSession() for _ in range(sample_n)]
        sockets = []
        for n, http in enumerate(sessions):
            ticket = await tickets.issue(Identity(f"s{n}", f"s{n}", Role.VIEWER), sid, Role.VIEWER)
            sockets.append(await http.ws_connect(f"{base}/v1/vstudio/ws?ticket={ticket}"))
        readers = [
            asyncio.create_task(sample.run(ws)) for sample, ws in zip(samples, sockets, strict=True)
        ]
        connected, _ = await asyncio.get_running_loop().run_in_executor(None, ours.recv)
        results["connect_seconds"] = round(time.perf_counter() - started, 2)
        results["connected"] = connected + len(sockets)
        await asyncio.sleep(2.0)  # settle, then measure idle memory
        rss_after = rss_bytes(server_pid) if server_pid else 0
        results["rss_per_connection_kb"] = round(
            (rss_after - rss_before) / max(1, results["connected"]) / 1024, 1
        )
        results["server_rss_mb"] = round(rss_after / 2**20, 1)

        sent_before = await metric(base, "ws_messages_sent_total", args.workers)
        writes_before = await metric(base, "ws_fanout_writes_total", args.workers)
        ours.send(("report",))
        _, bytes_before, _ = await asyncio.get_running_loop().run_in_executor(None, ours.recv)
        cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
        published = 0
        interval = 1 / args.rate
        publish_started = time.perf_counter()
        next_at = publish_started
        while time.perf_counter() - publish_started < args.duration:
            chat = {
                "id": f"twitch:bench-{published}",
                "platform": "twitch",
                "username": "bench",
                "text": "bench message " + "x" * args.text,
                "timestamp": int(time.time() * 1000),
            }
            await bus.publish_many(
                sid, "chat", [OutgoingEvent("chat.message", chat, dedupe_id=chat["id"])]
            )
            published += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        expected = published * results["connected"]
        deadline = time.perf_counter() + 15
        delivered = 0
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.5)
            ours.send(("report",))
            total, received, still_open = await asyncio.get_running_loop().run_in_executor(
                None, ours.recv
            )
            delivered = total + sum(sample.count for sample in samples)
            if delivered >= expected:
                break
        cpu_used = (cpu_seconds(server_pid) - cpu_before) if server_pid else 0.0
        sent = await metric(base, "ws_messages_sent_total", args.workers) - sent_before
        writes = await metric(base, "ws_fanout_writes_total", args.workers) - writes_before
        cheap_bytes = received - bytes_before
        latencies = sorted(lat for sample in samples for lat in sample.latencies)
        frame_sizes = [size for sample in samples for size in sample.frame_bytes]
        results.update(
            published=published,
            delivered=delivered,
            expected=expected,
            delivered_pct=round(100 * delivered / max(1, expected), 2),
            still_open=still_open + sum(not ws.closed for ws in sockets),
            latency_ms_p50=round(statistics.median(latencies), 1) if latencies else None,
            latency_ms_p99=round(latencies[int(0.99 * (len(latencies) - 1))], 1)
            if latencies
            else None,
            latency_ms_max=round(latencies[-1], 1) if latencies else None,
            frames_written=int(sent),
            frames_per_client=round(sent / max(1, results["connected"]), 1),
            mean_frame_bytes=round(statistics.mean(frame_sizes)) if frame_sizes else 0,
            writes=int(writes),
            writes_per_client=round(writes / max(1, results["connected"]), 1),
            bytes_per_write=round(cheap_bytes / max(1, writes * cheap_n / results["connected"])),
            server_cpu_seconds=round(cpu_used, 2),
            server_cpu_us_per_frame_per_connection=round(1e6 * cpu_used / max(1, sent), 2),
            server_cpu_us_per_write_per_connection=round(1e6 * cpu_used / max(1, writes), 2),
        )
        for ws in sockets:
            await ws.close()
        for reader in readers:
            reader.cancel()
        for http in sessions:
            await http.close()
        ours.send(("close",))
        await asyncio.get_running_loop().run_in_executor(None, ours.recv)

        # the floor: same connections, as many writes of the same size, same pacing
        raw_ours, raw_theirs = context.Pipe()
        raw = context.Process(target=raw_server_main, args=(raw_theirs,), daemon=True)
        raw.start()
        raw_port = await asyncio.get_running_loop().run_in_executor(None, raw_ours.recv)
        ours.send(("connect", "127.0.0.1", raw_port, ["/"] * results["connected"]))
        await asyncio.get_running_loop().run_in_executor(None, ours.recv)
        frames = max(1, round(results["writes_per_client"]))
        raw_ours.send(
            ("broadcast", frames, results["bytes_per_write"] or 300, args.duration / frames)
        )
        raw_cpu, raw_writes = await asyncio.get_running_loop().run_in_executor(None, raw_ours.recv)
        raw_ours.send(("quit",))
        raw_us = 1e6 * raw_cpu / max(1, raw_writes)
        results["raw_write_us_per_connection"] = round(raw_us, 2)
        results["server_vs_raw_per_write"] = round(
            results["server_cpu_us_per_write_per_connection"] / max(1e-9, raw_us), 2
        )
        results["server_vs_raw_per_frame"] = round(
            results["server_cpu_us_per_frame_per_connection"] / max(1e-9, raw_us), 2
        )
        raw.join(5)
    finally:
        with contextlib.suppress(Exception):
            ours.send(("quit",))
        clients.join(5)
        await client.aclose()
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=50, help="parsing, timestamping clients")
    parser.add_argument("--rate", type=float, default=50.0, help="chat messages per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing")
    parser.add_argument("--text", type=int, default=60, help="extra characters per message")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=0.0,
        help="ping every N s as in production (default: off, so the figures are the fan-out's)",
    )
    parser.add_argument("--url", help="target a running server instead of starting one")
    parser.add_argument("--server-pid", type=int, default=0, help="its pid, for CPU and RSS")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    raise_file_limit()
    with tempfile.TemporaryDirectory() as data:
        broker = BrokerSettings(redis_url=args.redis_url, data_dir=Path(data))
        with embedded_or_given(broker) as redis:
            results = asyncio.run(run(args, redis))
    if args.json:
        print(orjson.dumps(results).decode())
        return
    width = max(len(name) for name in results)
    for name, value in results.items():
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
