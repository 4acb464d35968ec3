"""The floor under ``bench/votes.py``: the same voters against a bare aiohttp WebSocket server.

``bench/votes.py`` charges the servers' CPU from the first vote to the last ack to the votes.
Part of it is no vote's work in our code: aiohttp reading the frame and waking the handler,
uvloop, the kernel's ``recv`` and ``send`` on loopback. This bench measures that part alone:
``--servers`` processes of a bare aiohttp application (uvloop, as ``vstudio serve`` runs) whose
WebSocket handler parses each text frame with orjson and writes a reply carrying its
``requestId`` to the transport, the way the server writes an ack; no Redis, no tallies, no
rate limits. The voters are ``bench/votes.py``'s own (one connection and one frame each, at a
random moment within ``--spread`` seconds), and the CPU is read the same way, so
``server_cpu_ms_per_vote`` here is what ``bench/votes.py`` could not go below without a frame
path other than aiohttp's.

A vote also costs a write to every viewer: the poll's live tally, which ``vstudio serve``
sends once the oldest vote it shows is ``poll_results_busy_ms`` (1 s) old, so about once per
voter in a one-second storm. With ``--tally 1`` each floor server does the same: one
pre-encoded ``poll.update``-sized frame to every connection it has, a second after the first
vote it did not yet show, and ``server_writes_per_vote`` comes out as ``bench/votes.py``'s.

    python bench/ws_floor.py --json                 # 10,000 voters, 2 processes
    python bench/ws_floor.py --server bare --json   # a hand-written uvloop protocol instead
    python bench/ws_floor.py --server picows --json # picows, a compiled WebSocket library
    python bench/ws_floor.py --tally 1 --json       # and a tally to every viewer, as ours
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import multiprocessing
import subprocess
import sys
import time
from typing import Any

import orjson
from benchkit import ROOT, cpu_split, new_loop, raise_file_limit, syscalls
from votes import percentile, voters_main

from server.wire import ws_text_frame

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def reply(raw: bytes | str) -> bytes:
    """The frame a vote's ack would be: its ``requestId`` back, JSON-encoded."""
    data = orjson.loads(raw)
    body = {"type": data["type"], "payload": {"counted": True}, "requestId": data["requestId"]}
    return ws_text_frame(orjson.dumps(body))


TALLY = ws_text_frame(
    orjson.dumps(
        {
            "type": "poll.update",
            "payload": {
                "pollId": "floor",
                "results": [{"optionIndex": n, "votes": 2500 + n} for n in range(4)],
                "totalVotes": 10_006,
            },
            "timestamp": 1_796_000_000_000,
        }
    )
)
"""A live tally of a four-option poll, the size of ``vstudio serve``'s."""


class Tally:
    """Every connection of one floor server, and a tally to all of them ``period`` seconds
    after the first vote none has seen yet (never, when ``period`` is 0)."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.transports: set[Any] = set()
        self.pending = False

    def voted(self) -> None:
        if self.period and not self.pending:
            self.pending = True
            asyncio.get_running_loop().call_later(self.period, self._send)

    def _send(self) -> None:
        self.pending = False
        for transport in self.transports:
            transport.write(TALLY)


def serve_aiohttp(port: int, tally: Tally) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False)
        await ws.prepare(request)
        transport = request.transport
        assert transport is not None
        tally.transports.add(transport)
        try:
            async for message in ws:
                transport.write(reply(message.data))
                tally.voted()
        finally:
            tally.transports.discard(transport)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        print=lambda *_: print("listening", flush=True),
        access_log=None,
        loop=new_loop(),
    )


class Bare(asyncio.Protocol):
    """The WebSocket upgrade and client frames read by hand (small masked frames only)."""

    def __init__(self, tally: Tally) -> None:
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: Any = None
        self.tally = tally

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.transports.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            key = b""
            for line in bytes(self.buffer[:end]).split(b"\r\n"):
                if line.lower().startswith(b"sec-websocket-key:"):
                    key = line.split(b":", 1)[1].strip()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            del self.buffer[: end + 4]
            self.upgraded = True
            self.tally.transports.add(self.transport)  # tallies only after the 101
        while len(self.buffer) >= 6:
            size = self.buffer[1] & 0x7F
            head = 8 if size == 126 else 6
            if size == 126 and len(self.buffer) >= 4:
                size = int.from_bytes(self.buffer[2:4], "big")
            if len(self.buffer) < head + size:
                break
            mask = self.buffer[head - 4 : head]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.buffer[head : head + size]))
            del self.buffer[: head + size]
            self.transport.write(reply(payload))
            self.tally.voted()


def serve_bare(port: int, tally: Tally) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: Bare(tally), "127.0.0.1", port
        )
        print("listening", flush=True)
        await server.serve_forever()

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main())


def serve_picows(port: int, tally: Tally) -> None:
    """picows (a compiled WebSocket library for asyncio, not a dependency of ours): what a
    frame path other than aiohttp's would cost. ``pip install picows`` first."""
    from picows import WSListener, WSMsgType, ws_create_server

    class Listener(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: Any) -> None:
            self.underlying = transport.underlying_transport
            tally.transports.add(self.underlying)

        def on_ws_disconnected(self, transport: Any) -> None:
            tally.transports.discard(self.underlying)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                self.underlying.write(reply(frame.get_payload_as_bytes()))
                tally.voted()

    async def main() -> None:
        server = await ws_create_server(lambda _: Listener(), "127.0.0.1", port)
        print("listening", flush=True)
        await server.serve_forever()

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main())


def start(port: int, kind: str, tally: float) -> subprocess.Popen[bytes]:
    command = [sys.executable, __file__, "--serve", str(port), "--server", kind]
    command += ["--tally", str(tally)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT)
    assert process.stdout is not None
    if b"listening" not in process.stdout.readline():
        raise SystemExit("floor server did not start")
    return process


SERVERS = {"aiohttp": serve_aiohttp, "bare": serve_bare, "picows": serve_picows}


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    ports = [free_port() for _ in range(args.servers)]
    servers = [start(port, args.server, args.tally) for port in ports]
    pids = [server.pid for server in servers]
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    targets = [("127.0.0.1", port) for port in ports]
    child = context.Process(
        target=voters_main,
        args=(theirs, targets, ["/ws"] * args.viewers, "floor", args.parallel),
        daemon=True,
    )
    child.start()
    try:
        _, connected, _ = ours.recv()
        ours.send((args.spread, args.settle))
        ours.recv()  # the votes start now
        user_before, system_before = cpu_split(*pids)
        reads_before, writes_before = syscalls(*pids)
        _, _, _, latencies, first_sent, last_ack, _ = ours.recv()
        user_after, system_after = cpu_split(*pids)
        reads_after, writes_after = syscalls(*pids)
        ours.send("close")
        child.join(10)
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
    answered = len(latencies)
    cpu = user_after + system_after - user_before - system_before
    return {
        "server": args.server,
        "tally_seconds": args.tally,
        "viewers": args.viewers,
        "servers": args.servers,
        "connected": connected,
        "answered": answered,
        "vote_window_seconds": round(max(1e-9, last_ack - first_sent), 3),
        "ack_ms_p50": percentile(latencies, 0.5),
        "ack_ms_p99": percentile(latencies, 0.99),
        "server_cpu_seconds": round(cpu, 2),
        "server_cpu_user_seconds": round(user_after - user_before, 2),
        "server_cpu_system_seconds": round(system_after - system_before, 2),
        "server_cpu_ms_per_vote": round(1000 * cpu / max(1, answered), 3),
        "server_reads_per_vote": round((reads_after - reads_before) / max(1, answered), 2),
        "server_writes_per_vote": round((writes_after - writes_before) / max(1, answered), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=10_000)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=50, help="connects in flight")
    parser.add_argument("--spread", type=float, default=1.0, help="seconds the votes span")
    parser.add_argument("--settle", type=float, default=3.0, help="quiet seconds before voting")
    parser.add_argument(
        "--server",
        choices=sorted(SERVERS),
        default="aiohttp",
        help="aiohttp (the floor under vstudio serve), bare (a hand-written uvloop protocol) "
        "or picows (a compiled WebSocket library; pip install picows)",
    )
    parser.add_argument(
        "--tally",
        type=float,
        default=0.0,
        help="seconds after an unseen vote until a tally goes to every connection "
        "(0: none; 1 is vstudio serve's poll_results_busy_ms)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_file_limit()
    if args.serve is not None:
        SERVERS[args.server](args.serve, Tally(args.tally))
        return
    started = time.monotonic()
    results = run(args)
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(orjson.dumps(results).decode())
    else:
        for name, value in results.items():
            print(f"{name:<26}  {value}")


if __name__ == "__main__":
    main()
