"""Vote storm: N viewers, each voting once within about a second, over real WebSockets.

Starts ``--servers`` separate ``vstudio serve`` processes on one Redis (or uses the Redis of
``--redis-url`` / ``REDIS_URL``; else an embedded Valkey), opens a live session with a poll,
connects N viewers spread evenly over the servers (cheap raw-socket clients in a child process
that parse frames just enough to find their own reply), and lets every viewer send one
``poll.vote`` at a random moment within ``--spread`` seconds. A separate aiohttp observer
timestamps every tally (``poll.update {pollId, results, totalVotes}``) and the final
``poll.results``. It prints:

- votes/s: acknowledged votes divided by the time from the first vote sent to the last ack;
- ack latency p50/p99 (send to reply);
- results lag: from the last acknowledged vote to the first tally whose
  counts include every acknowledged vote (target < 250 ms, issue 17);
- server CPU from the first vote to the last ack, per vote (target <= 0.05 ms), split into user
  and system time, with read and write system calls per vote; the quiet ``--settle`` period
  before the votes is reported apart (``server_cpu_settle_seconds``), not charged to them;
  ``..._to_results``: the same up to the tally that shows every vote (plus its walk), which
  also charges the votes with the tallies written after the last ack;
- Redis calls per vote in that window (``redis_scripts_per_vote``: script calls, the inverse
  of the votes per batch plus the tallies' claims; ``redis_commands_per_vote``: every command,
  the scripts' own included), read from ``INFO commandstats``, so on a Redis of its own;
- refusals: voters without a reply, by reason (a connection the server dropped is named);
- exact: whether the final results (``final: true`` after ``poll.end``) equal, option by
  option, the votes the clients were told were counted.

    python bench/votes.py                      # 10,000 viewers, 2 server processes
    python bench/votes.py --viewers 2000 --servers 1
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing
import os
import random
import signal
import subprocess
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson
from benchkit import (
    cpu_split,
    new_loop,
    py_spy,
    raise_file_limit,
    start_server,
    syscalls,
)

from broker import connect
from broker.models import Role, is_poll_tally
from broker.runtime import redis_url as embedded_or_given
from config import BrokerSettings
from server.identity.auth import Identity, mint_token
from server.identity.tickets import TicketStore

SECRET = "bench-secret-votes-bench-secret-votes"
WS_KEY = base64.b64encode(b"0123456789abcdef").decode()
OPTIONS = ["first", "second", "third", "fourth"]


RESULTS_WALK = 0.1
"""Seconds after the observer has the tally showing every vote until the CPU is read again:
the servers' walk writes it to the other viewers meanwhile."""


def client_frame(body: bytes) -> bytes:
    """A masked client text frame (the mask key is zero, so the payload stays as is)."""
    size = len(body)
    if size < 126:
        header = bytes([0x81, 0x80 | size])
    else:
        header = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    return header + b"\x00\x00\x00\x00" + body


def server_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Complete ``(opcode, payload)`` frames taken off the front of ``buffer``."""
    frames = []
    while len(buffer) >= 2:
        length = buffer[1] & 0x7F
        head = 2
        if length == 126:
            if len(buffer) < 4:
                break
            length, head = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length, head = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < head + length:
            break
        frames.append((buffer[0] & 0x0F, bytes(buffer[head : head + length])))
        del buffer[: head + length]
    return frames


# --- the voters (child process) ----------------------------------------------------------------


class Voter(asyncio.Protocol):
    """Handshake, vote once when told, note when the reply with our ``requestId`` arrives."""

    def __init__(self, request: bytes, option: int, poll_id: str, number: int) -> None:
        self.request = request
        self.option = option
        self.request_id = f"v{number}"
        self.needle = f'"requestId":"{self.request_id}"'.encode()
        self.vote = client_frame(
            orjson.dumps(
                {
                    "type": "poll.vote",
                    "requestId": self.request_id,
                    "payload": {"pollId": poll_id, "optionIndex": option},
                }
            )
        )
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.open = False
        self.sent_at = 0.0
        self.acked_at = 0.0
        self.reply: dict[str, Any] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            ok = self.buffer.startswith(b"HTTP/1.1 101")
            del self.buffer[: end + 4]
            self.open = ok
            if not self.ready.done():
                self.ready.set_result(ok)
            data = b""
        self.buffer += data
        for opcode, payload in server_frames(self.buffer):
            if opcode == 0x9 and self.transport is not None:  # ping: masked pong
                self.transport.write(b"\x8a\x80\x00\x00\x00\x00")
            elif opcode == 0x1 and self.reply is None and self.needle in payload:
                self.acked_at = time.time()
                self.reply = orjson.loads(payload)

    def send_vote(self) -> None:
        if self.transport is not None and self.open:
            self.sent_at = time.time()
            self.transport.write(self.vote)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if not self.ready.done():
            self.ready.set_result(False)


async def _voters(
    targets: list[tuple[str, int]],
    paths: list[str],
    poll_id: str,
    pipe: Connection,
    parallel: int,
) -> None:
    loop = asyncio.get_running_loop()
    voters: list[Voter] = []
    gate = asyncio.Semaphore(parallel)

    async def one(number: int, path: str) -> None:
        host, port = targets[number % len(targets)]
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        async with gate:
            voter = Voter(request, number % len(OPTIONS), poll_id, number)
            try:
                await loop.create_connection(lambda: voter, host, port)
                if await asyncio.wait_for(voter.ready, 60):
                    voters.append(voter)
            except (OSError, TimeoutError):
                return

    started = time.perf_counter()
    await asyncio.gather(*(one(number, path) for number, path in enumerate(paths)))
    pipe.send(("connected", len(voters), time.perf_counter() - started))
    spread, settle = await loop.run_in_executor(None, pipe.recv)
    await asyncio.sleep(settle)  # let the connects' session.join and session.state settle
    pipe.send(("voting",))
    cpu_started = time.process_time()
    for voter in voters:
        loop.call_later(random.uniform(0, spread), voter.send_vote)
    await asyncio.sleep(spread + 0.05)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(v.reply is None and v.open for v in voters):
        await asyncio.sleep(0.05)
    acked: Counter[int] = Counter()
    refused: Counter[str] = Counter()
    latencies = []
    for voter in voters:
        if voter.reply is None:
            refused["no reply (connection lost)" if not voter.open else "no reply"] += 1
        elif voter.reply.get("type") == "poll.vote":
            acked[voter.option] += 1
            latencies.append(1000 * (voter.acked_at - voter.sent_at))
        else:
            refused[str(voter.reply.get("payload", {}).get("message"))] += 1
    cpu_used = time.process_time() - cpu_started
    sent = [v.sent_at for v in voters if v.sent_at]
    acks = [v.acked_at for v in voters if v.reply is not None]
    pipe.send(
        (
            "voted",
            dict(acked),
            dict(refused),
            sorted(latencies),
            min(sent, default=0.0),
            max(acks, default=0.0),
            cpu_used,
        )
    )
    await loop.run_in_executor(None, pipe.recv)
    for voter in voters:
        if voter.transport is not None:
            voter.transport.close()
    await asyncio.sleep(0.5)


def voters_main(
    pipe: Connection,
    targets: list[tuple[str, int]],
    paths: list[str],
    poll_id: str,
    parallel: int,
) -> None:
    """Child process: connect every voter, vote on command, report."""
    raise_file_limit()
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(_voters(targets, paths, poll_id, pipe, parallel))


# --- the servers and the observer --------------------------------------------------------------


class Observer:
    """One parsing client: every tally and final result with its receipt time."""

    def __init__(self) -> None:
        self.results: list[tuple[float, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            frame = orjson.loads(message.data)
            tally = frame["type"] == "poll.update" and is_poll_tally(frame["payload"])
            if tally or frame["type"] == "poll.results":
                self.results.append((time.time(), frame["payload"]))
                self.changed.set()

    async def first(self, check: Any, timeout: float) -> tuple[float, dict[str, Any]] | None:
        """The first results frame that satisfies ``check``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for received, payload in self.results:
                if check(payload):
                    return received, payload
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


async def redis_calls(client: Any) -> tuple[int, int] | None:
    """Scripts (``EVALSHA``/``EVAL``) and commands Redis has run so far, all clients together
    (``None`` when it cannot tell: a cluster answers per node)."""
    try:
        stats = await client.info("commandstats")
        scripts = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in SCRIPTS)
        commands = sum(entry["calls"] for entry in stats.values() if isinstance(entry, dict))
    except Exception:
        return None
    return scripts, commands


SCRIPTS = ("evalsha", "eval", "evalsha_ro", "eval_ro")


def per_vote(
    before: tuple[int, int] | None, after: tuple[int, int] | None, which: int, votes: int
) -> float | None:
    """Redis calls per vote between two :func:`redis_calls` readings (a script's own commands,
    run inside it, are counted too: commandstats counts them as calls)."""
    if before is None or after is None:
        return None
    return round((after[which] - before[which]) / max(1, votes), 3)


def profile(pid: int, out: str) -> subprocess.Popen[bytes]:
    """py-spy on the server (and its workers) from the first vote to the last ack."""
    return py_spy(pid, out, 1000)


def percentile(values: list[float], share: float) -> float | None:
    return round(values[int(share * (len(values) - 1))], 1) if values else None


async def run(args: argparse.Namespace, redis: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vstudio-votes-"))
    servers = [
        start_server(redis, tmp / f"server{n}", SECRET, VSTUDIO_LOG_JSON="1")
        for n in range(args.servers)
    ]
    bases = [base for _, base in servers]
    client = await connect(redis)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = None
    results: dict[str, Any] = {"viewers": args.viewers, "servers": args.servers}
    try:
        artist = f"bench-artist-{os.getpid()}-{int(time.time())}"
        headers = {"Authorization": f"Bearer {mint_token(SECRET, user_id=artist, role='artist')}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(bases[0] + "/v1/vstudio/sessions", json={"title": "votes"}) as r:
                session = await r.json()
            sid = session["id"]
            async with http.post(f"{bases[0]}/v1/vstudio/sessions/{sid}/start") as r:
                assert r.status == 200, await r.text()
            spec = {"question": "Which song next?", "options": OPTIONS}
            async with http.post(f"{bases[0]}/v1/vstudio/sessions/{sid}/polls", json=spec) as r:
                poll = await r.json()
                assert r.status == 200, poll
        tickets = TicketStore(client, ttl=600)
        paths = []
        for n in range(args.viewers):
            who = Identity(f"voter{n}", f"voter{n}", Role.VIEWER)
            paths.append(f"/v1/vstudio/ws?ticket={await tickets.issue(who, sid, Role.VIEWER)}")
        targets = []
        for base in bases:
            host, port = base.split("//", 1)[1].split(":")
            targets.append((host, int(port)))
        child = context.Process(
            target=voters_main,
            args=(theirs, targets, paths, poll["id"], args.parallel),
            daemon=True,
        )
        child.start()
        loop = asyncio.get_running_loop()

        observer = Observer()
        async with aiohttp.ClientSession() as http:
            ticket = await tickets.issue(
                Identity("observer", "observer", Role.VIEWER), sid, Role.VIEWER
            )
            ws = await http.ws_connect(f"{bases[-1]}/v1/vstudio/ws?ticket={ticket}")
            reader = asyncio.create_task(observer.run(ws))
            _, connected, connect_seconds = await loop.run_in_executor(None, ours.recv)
            results["connected"] = connected
            results["connect_seconds"] = round(connect_seconds, 2)
            pids = [process.pid for process, _ in servers]
            cpu_settle = sum(cpu_split(*pids))
            ours.send((args.spread, args.settle))
            await loop.run_in_executor(None, ours.recv)  # settled: the votes start now
            spies = (
                [profile(pid, f"{args.profile}.{n}.txt") for n, pid in enumerate(pids)]
                if args.profile
                else []
            )
            user_before, system_before = cpu_split(*pids)
            reads_before, writes_before = syscalls(*pids)
            commands_before = await redis_calls(client)
            cpu_before = user_before + system_before
            reply = await loop.run_in_executor(None, ours.recv)
            _, acked, refused, latencies, first_sent, last_ack, voters_cpu = reply
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            user_after, system_after = cpu_split(*pids)
            reads_after, writes_after = syscalls(*pids)
            commands_after = await redis_calls(client)
            server_cpu = user_after + system_after - cpu_before
            acked = {int(option): count for option, count in acked.items()}
            expected = [acked.get(option, 0) for option in range(len(OPTIONS))]
            total = sum(expected)
            window = max(1e-9, last_ack - first_sent)
            results.update(
                votes_acknowledged=total,
                votes_refused=sum(refused.values()),
                refusals=refused or None,
                vote_window_seconds=round(window, 3),
                votes_per_second=round(total / window),
                ack_ms_p50=percentile(latencies, 0.5),
                ack_ms_p99=percentile(latencies, 0.99),
                ack_ms_max=percentile(latencies, 1.0),
                server_cpu_seconds=round(server_cpu, 2),
                server_cpu_user_seconds=round(user_after - user_before, 2),
                server_cpu_system_seconds=round(system_after - system_before, 2),
                server_cpu_settle_seconds=round(cpu_before - cpu_settle, 2),
                server_cpu_ms_per_vote=round(1000 * server_cpu / max(1, total), 3),
                server_reads_per_vote=round((reads_after - reads_before) / max(1, total), 2),
                server_writes_per_vote=round((writes_after - writes_before) / max(1, total), 2),
                load_generator_cpu_seconds=round(voters_cpu, 2),
                redis_scripts_per_vote=per_vote(commands_before, commands_after, 0, total),
                redis_commands_per_vote=per_vote(commands_before, commands_after, 1, total),
                machine_load_average=round(os.getloadavg()[0], 1),
            )
            covering = await observer.first(lambda p: p["totalVotes"] >= total, timeout=10)
            results["results_lag_ms"] = (
                round(1000 * (covering[0] - last_ack)) if covering else "never (10 s)"
            )
            results["results_frames"] = len(observer.results)
            # and up to the results that show every vote: tallies written after the last ack
            # (a storm's final tally, say) are the votes' cost too
            await asyncio.sleep(RESULTS_WALK)
            user_shown, system_shown = cpu_split(*pids)
            _, writes_shown = syscalls(*pids)
            results.update(
                server_cpu_ms_per_vote_to_results=round(
                    1000 * (user_shown + system_shown - cpu_before) / max(1, total), 3
                ),
                server_writes_per_vote_to_results=round(
                    (writes_shown - writes_before) / max(1, total), 2
                ),
            )
            async with aiohttp.ClientSession(headers=headers) as rest:
                url = f"{bases[0]}/v1/vstudio/sessions/{sid}/polls/{poll['id']}/end"
                async with rest.post(url) as r:
                    assert r.status == 200, await r.text()
            final = await observer.first(lambda p: p.get("final"), timeout=10)
            final_counts = final[1]["results"] if final else None
            results["final_results"] = final_counts
            results["acknowledged_tallies"] = expected
            # exact: the final counts are, option by option, the votes clients were told counted
            results["exact"] = final_counts == expected
            reader.cancel()
            await ws.close()
            for spy in spies:
                spy.wait(30)
        ours.send("close")
    finally:
        if child is not None:
            child.join(10)
        await client.aclose()
        for process, _ in servers:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Run it on a quiet machine: the load generator, the servers and Redis share its "
        "cores. Exit code 0 when the final results are exact, 1 when they are not.",
    )
    parser.add_argument(
        "--viewers", type=int, default=10_000, help="voters, one WebSocket and one vote each"
    )
    parser.add_argument("--servers", type=int, default=2, help="vstudio serve processes")
    parser.add_argument("--parallel", type=int, default=50, help="connects in flight")
    parser.add_argument("--spread", type=float, default=1.0, help="seconds the votes span")
    parser.add_argument("--settle", type=float, default=10.0, help="quiet seconds before voting")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        help="Redis to use (default: REDIS_URL, else an embedded Valkey)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="py-spy each server during the burst into PREFIX.N.txt (raw stacks)",
    )
    args = parser.parse_args()
    raise_file_limit()
    with tempfile.TemporaryDirectory() as data:
        broker = BrokerSettings(redis_url=args.redis_url, data_dir=Path(data))
        with embedded_or_given(broker) as redis:
            results = asyncio.run(run(args, redis))
    if args.json:
        print(orjson.dumps(results).decode())
    else:
        width = max(len(name) for name in results)
        for name, value in results.items():
            print(f"{name:<{width}}  {value}")
    if not results.get("exact"):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
