"""Reconnect storm: N viewers on a real ``vstudio serve``, kill -9 it, start it again.

Every viewer is a logged-in user (a JWT minted with the server's secret) that connects as the
project's Python client does: ``POST /v1/vstudio/ticket`` for a single-use ticket, then the
WebSocket upgrade with ``?ticket=`` (and ``since=`` the last event id it saw), on one keep-alive
TCP connection; with ``--browser`` the WebSocket opens a connection of its own, as a browser's
does (so the server's guard takes the upgrade without aiohttp). The viewers are lean
``asyncio.Protocol`` clients in ``--processes`` child processes (uvloop), so the load generator
costs little of the two cores it shares with the server.

The run: connect everyone, publish ``--before`` events and wait until every viewer has them,
``kill -9`` every server process, publish ``--during`` events while it is down, start it again
on the same port. Each viewer reconnects on the seed's schedule with jitter
(:class:`vstudio_cli.client.Backoff`: the first retry 0.7-1.3 s after the drop, then x2, 10
retries) and resumes from its last id. Once all are back (or ``--timeout``), ``--after`` events
are published. Printed: seconds until 99% and 100% of the viewers had their ``session.state``
again (from the restarted server's "listening" line, and from the kill), how many resumed with
``recovered: true``, events missed and events received twice (counted exactly per viewer over
every bench event id), and the restarted server's CPU per reconnect.

    python bench/reconnect.py --viewers 2000
    python bench/reconnect.py --viewers 10000 --processes 3 --json
    python bench/reconnect.py --viewers 10000 --workers 2 --browser --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import orjson
from benchkit import (
    cpu_seconds,
    new_loop,
    process_tree,
    py_spy,
    raise_file_limit,
    start_server,
    syscalls,
)

from broker import Bus, connect
from broker.bus import OutgoingEvent
from broker.runtime import redis_url as embedded_or_given
from config import BrokerSettings
from server.identity.auth import mint_token
from vstudio_cli.client import FATAL_CLOSE_CODES, Backoff

SECRET = "bench-secret-bench-secret-bench-secret"
MARK = b'"bench":'
EVENT_ID = re.compile(rb'"id":"(\d+-\d+)"')
ATTEMPT_TIMEOUT = 30.0
"""Seconds one connection attempt may take before the viewer gives it up (as aiohttp's total)."""


# --- lean viewers (child processes) ----------------------------------------------------------


class Viewer(asyncio.Protocol):
    """One viewer: ticket over HTTP, upgrade on the same connection, then WebSocket frames."""

    def __init__(self, crowd: Crowd, user: str) -> None:
        self.crowd = crowd
        self.token = mint_token(SECRET, user_id=user, role="viewer")
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.phase = "idle"
        self.opened = False  # the upgrade succeeded on this attempt (the client's attempt reset)
        self.close_code: int | None = None
        self.last_id: str | None = None
        self.ids: list[bytes] = []
        self.states = 0
        self.recovered: bool | None = None
        self.dropped_at = 0.0
        self.back_at = 0.0
        self.attempt = 0
        self.gave_up = False
        self.watchdog: asyncio.TimerHandle | None = None
        self.opening: asyncio.Task[None] | None = None
        self.ticket: str | None = None  # --browser: the ticket the next connection upgrades with

    # one attempt
    def start(self) -> None:
        self.phase, self.opened, self.close_code = "connecting", False, None
        self.ticket = None
        self.buf.clear()
        self.watchdog = self.crowd.loop.call_later(ATTEMPT_TIMEOUT, self._timed_out)
        self.opening = self.crowd.loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            await self.crowd.loop.create_connection(lambda: self, self.crowd.host, self.crowd.port)
        except OSError:
            self._ended()

    def _timed_out(self) -> None:
        self.watchdog = None
        if self.transport is not None:
            self.transport.abort()
        else:  # still connecting: that connect must not land later beside the next attempt's
            if self.opening is not None:
                self.opening.cancel()
            self._ended()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.ticket is not None:  # --browser: the WebSocket's own connection
            self._upgrade(self.ticket)
            return
        body = orjson.dumps({"sessionId": self.crowd.session, "role": "viewer"})
        self.phase = "ticket"
        self.transport.write(
            b"POST /v1/vstudio/ticket HTTP/1.1\r\nHost: "
            + self.crowd.hostport
            + b"\r\nAuthorization: Bearer "
            + self.token.encode()
            + (b"\r\nConnection: close" if self.crowd.browser else b"")
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.phase == "ticket":
            self._ticket_answer()
        if self.phase == "upgrade":
            self._upgrade_answer()
        if self.phase == "open":
            self._frames()

    def _head(self) -> tuple[bytes, int] | None:
        end = self.buf.find(b"\r\n\r\n")
        return None if end < 0 else (bytes(self.buf[:end]), end + 4)

    def _ticket_answer(self) -> None:
        head = self._head()
        if head is None:
            return
        text, start = head
        match = re.search(rb"content-length: *(\d+)", text, re.IGNORECASE)
        size = int(match.group(1)) if match else 0
        if len(self.buf) < start + size:
            return
        body = bytes(self.buf[start : start + size])
        del self.buf[: start + size]
        if not text.startswith(b"HTTP/1.1 200"):
            status = text[9:12].decode()
            self.crowd.refusals[status] = self.crowd.refusals.get(status, 0) + 1
            assert self.transport is not None
            self.transport.close()
            return
        ticket = orjson.loads(body)["ticket"]
        assert self.transport is not None
        if self.crowd.browser:  # the WebSocket on a connection of its own, as a browser opens it
            self.ticket, self.phase = ticket, "reopen"
            self.transport.close()
            return
        self._upgrade(ticket)

    def _upgrade(self, ticket: str) -> None:
        since = f"&since={self.last_id}" if self.last_id else ""
        self.phase = "upgrade"
        assert self.transport is not None
        self.transport.write(
            f"GET /v1/vstudio/ws?ticket={ticket}{since} HTTP/1.1\r\n".encode()
            + b"Host: "
            + self.crowd.hostport
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

    def _upgrade_answer(self) -> None:
        head = self._head()
        if head is None:
            return
        text, start = head
        del self.buf[:start]
        if not text.startswith(b"HTTP/1.1 101"):
            assert self.transport is not None
            self.transport.close()
            return
        self.phase, self.opened = "open", True

    def _frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            opcode, size, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, at = int.from_bytes(buf[2:4]), 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, at = int.from_bytes(buf[2:10]), 10
            if len(buf) < at + size:
                return
            payload = bytes(buf[at : at + size])
            del buf[: at + size]
            if opcode == 1:
                self._text(payload)
            elif opcode == 8:
                self.close_code = int.from_bytes(payload[:2]) if len(payload) >= 2 else 1005
                assert self.transport is not None
                self.transport.close()
                return
            elif opcode == 9 and self.transport is not None:  # ping: an empty masked pong
                self.transport.write(b"\x8a\x80\x00\x00\x00\x00")

    def _text(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"session.state"'):
            self.states += 1
            state = orjson.loads(payload)["payload"]
            if self.dropped_at and not self.back_at:
                self.back_at = time.time()
                self.recovered = state.get("recovered")
                self.crowd.back += 1
            if self.watchdog is not None:
                self.watchdog.cancel()
                self.watchdog = None
            return
        match = EVENT_ID.search(payload, max(0, len(payload) - 40))
        if match is not None:
            self.last_id = match.group(1).decode()
            if MARK in payload:
                self.ids.append(match.group(1))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.phase == "reopen":
            self.phase = "connecting"
            self.opening = self.crowd.loop.create_task(self._open())
            return
        self._ended()

    def _ended(self) -> None:
        """The attempt or the connection ended: schedule the next one as the client does."""
        if self.phase == "idle":
            return
        self.phase = "idle"
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        crowd = self.crowd
        if crowd.stopping:
            return
        if self.opened:
            self.attempt = 0
            if self.states and not self.dropped_at:
                self.dropped_at = time.time()
        if self.close_code in FATAL_CLOSE_CODES or self.attempt >= crowd.backoff.retries:
            self.gave_up = True
            return
        close_1012 = self.close_code == 1012 and self.attempt == 0
        delay = 0.05 if close_1012 else crowd.backoff.delay(self.attempt)
        self.attempt += 1
        crowd.loop.call_later(delay, self.start)


class Crowd:
    """The viewers of one child process."""

    def __init__(
        self, host: str, port: int, session: str, users: list[str], browser: bool = False
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.browser = browser
        self.host, self.port, self.session = host, port, session
        self.hostport = f"{host}:{port}".encode()
        self.backoff = Backoff()
        self.viewers = [Viewer(self, user) for user in users]
        self.back = 0
        self.stopping = False
        self.refusals: dict[str, int] = {}

    async def tickets(self, count: int) -> int:
        """Ask for ``count`` tickets over HTTP only (no upgrade), 100 at a time: how many came."""
        gate = asyncio.Semaphore(100)
        body = orjson.dumps({"sessionId": self.session, "role": "viewer"})

        async def one(viewer: Viewer) -> bool:
            async with gate:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(
                    b"POST /v1/vstudio/ticket HTTP/1.1\r\nHost: "
                    + self.hostport
                    + b"\r\nAuthorization: Bearer "
                    + viewer.token.encode()
                    + b"\r\nConnection: close\r\nContent-Type: application/json\r\n"
                    + b"Content-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                answer = await reader.read()
                writer.close()
                return answer.startswith(b"HTTP/1.1 200")

        done = await asyncio.gather(*(one(v) for v in self.viewers[:count]))
        return sum(done)

    def stats(self) -> dict[str, int]:
        return {
            "live": sum(v.phase == "open" and v.states > 0 for v in self.viewers),
            "back": self.back,
            "gave_up": sum(v.gave_up for v in self.viewers),
            "events": sum(len(v.ids) for v in self.viewers),
        }

    def verify(self, expected: list[bytes]) -> dict[str, Any]:
        wanted = set(expected)
        missed = duplicated = 0
        for viewer in self.viewers:
            got = set(viewer.ids)
            missed += len(wanted - got)
            duplicated += len(viewer.ids) - len(got) + len(got - wanted)
        return {
            "missed": missed,
            "duplicated": duplicated,
            "recovered_true": sum(v.recovered is True for v in self.viewers),
            "recovered_false": sum(v.recovered is False for v in self.viewers),
            "back_at": [v.back_at for v in self.viewers if v.back_at],
            "dropped_at": [v.dropped_at for v in self.viewers if v.dropped_at],
            "refusals": dict(self.refusals),
        }


def crowd_main(
    pipe: Connection, host: str, port: int, session: str, users: list[str], browser: bool
) -> None:
    """A child process: start its viewers, then answer the parent's questions."""
    raise_file_limit()

    async def main() -> None:
        crowd = Crowd(host, port, session, users, browser)
        loop = asyncio.get_running_loop()
        pending = list(crowd.viewers)
        while pending:  # the first connect, a few hundred at a time
            batch, pending = pending[:200], pending[200:]
            for viewer in batch:
                viewer.start()
            while sum(v.states > 0 or v.gave_up for v in batch) < len(batch):
                await asyncio.sleep(0.02)
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command[0] == "stats":
                pipe.send(crowd.stats())
            elif command[0] == "tickets":
                pipe.send(await crowd.tickets(command[1]))
            elif command[0] == "verify":
                pipe.send(crowd.verify(command[1]))
            else:
                crowd.stopping = True
                for viewer in crowd.viewers:
                    if viewer.transport is not None:
                        viewer.transport.abort()
                pipe.send("bye")
                return

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main())


# --- the run ---------------------------------------------------------------------------------


def profile(pid: int, out: str) -> subprocess.Popen[bytes]:
    """py-spy on the server (and its workers) while the viewers come back."""
    return py_spy(pid, out, 200)


def kill_tree(process: Any) -> None:
    """kill -9 the server and every worker it started (workers outlive a killed parent)."""
    for pid in process_tree(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


async def ask(pipes: list[Connection], command: tuple[Any, ...]) -> list[Any]:
    loop = asyncio.get_running_loop()
    for pipe in pipes:
        pipe.send(command)
    return [await loop.run_in_executor(None, pipe.recv) for pipe in pipes]


async def publish(bus: Bus, session: str, count: int, start: int) -> list[bytes]:
    ids = []
    for n in range(start, start + count):
        event = OutgoingEvent("reaction.burst", {"counts": {"clap": 1}, "bench": n})
        [event_id] = await bus.publish_many(session, "events", [event])
        assert event_id is not None
        ids.append(event_id.encode())
    return ids


async def wait_for(pipes: list[Connection], done: Any, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        total: dict[str, int] = {}
        for stats in await ask(pipes, ("stats",)):
            for key, value in stats.items():
                total[key] = total.get(key, 0) + value
        if done(total) or time.monotonic() > deadline:
            return total
        await asyncio.sleep(0.1)


async def redis_commands(client: Any) -> int:
    """Commands Redis ran so far (``INFO commandstats``, scripts' inner commands included)."""
    stats = await client.info("commandstats")
    return sum(int(entry["calls"]) for entry in stats.values())


async def redis_cpu(client: Any) -> float:
    """CPU seconds the Redis server has used (``INFO cpu``, main thread and children)."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def percentile(values: list[float], share: float, count: int) -> float | None:
    """Seconds by which ``share`` of ``count`` viewers were back; ``None`` if fewer were."""
    needed = max(1, int(share * count + 0.999999))
    return None if len(values) < needed else sorted(values)[needed - 1]


async def run(args: argparse.Namespace, redis: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vstudio-reconnect-"))
    env = {"VSTUDIO_TICKET_RATE_LIMIT": "1000"}
    process, base = start_server(redis, tmp, SECRET, workers=args.workers, **env)
    host, port = base.split("//", 1)[1].split(":")
    client = await connect(redis)
    bus = Bus(client)
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    children: list[Any] = []
    results: dict[str, Any] = {
        "viewers": args.viewers,
        "server_processes": args.workers,
        "browser": args.browser,
    }
    try:
        import aiohttp

        artist = f"bench-artist-{os.getpid()}-{int(time.time())}"
        token = mint_token(SECRET, user_id=artist, role="artist")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            async with http.post(base + "/v1/vstudio/sessions", json={"title": "storm"}) as r:
                session = (await r.json())["id"]
            async with http.post(f"{base}/v1/vstudio/sessions/{session}/start") as r:
                assert r.status == 200, await r.text()
        users = [f"rv{n}-{os.getpid()}" for n in range(args.viewers)]
        started = time.perf_counter()
        for part in range(args.processes):
            ours, theirs = context.Pipe()
            mine = users[part :: args.processes]
            child = context.Process(
                target=crowd_main,
                args=(theirs, host, int(port), session, mine, args.browser),
                daemon=True,
            )
            child.start()
            pipes.append(ours)
            children.append(child)
        stats = await wait_for(pipes, lambda s: s["live"] >= args.viewers, args.timeout)
        results["connect_seconds"] = round(time.perf_counter() - started, 2)
        results["connected"] = stats["live"]
        expected = await publish(bus, session, args.before, 0)
        await wait_for(pipes, lambda s: s["events"] >= args.before * args.viewers, 30)

        # tickets alone (no upgrade): the server CPU of one ticket, for the capacity plan
        ticket_n = min(args.viewers, 2000)
        cpu_before = cpu_seconds(process.pid)
        issued = sum(await ask(pipes, ("tickets", ticket_n // args.processes)))
        results["tickets_issued"] = issued
        results["server_cpu_ms_per_ticket"] = round(
            1000 * (cpu_seconds(process.pid) - cpu_before) / max(1, issued), 3
        )

        killed_at = time.time()
        kill_tree(process)
        expected += await publish(bus, session, args.during, args.before)
        await asyncio.sleep(args.down)
        cpu_server_start = time.perf_counter()
        process, _ = start_server(redis, tmp, SECRET, workers=args.workers, port=int(port), **env)
        ready_at = time.time()
        results["restart_seconds"] = round(time.perf_counter() - cpu_server_start, 2)
        cpu_ready = cpu_seconds(process.pid)
        reads_ready, writes_ready = syscalls(process.pid)
        commands_ready = await redis_commands(client)
        redis_cpu_ready = await redis_cpu(client)
        spy = profile(process.pid, args.profile) if args.profile else None
        stats = await wait_for(pipes, lambda s: s["back"] + s["gave_up"] >= args.viewers, 120)
        cpu_back = cpu_seconds(process.pid) - cpu_ready
        reads_back, writes_back = syscalls(process.pid)
        commands = await redis_commands(client) - commands_ready
        redis_used = await redis_cpu(client) - redis_cpu_ready
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        after = await publish(bus, session, args.after, args.before + args.during)
        expected += after
        total = len(expected) * args.viewers
        await wait_for(pipes, lambda s: s["events"] >= total, 15)
        checks = await ask(pipes, ("verify", expected))
        back = [at - ready_at for check in checks for at in check["back_at"]]
        since_kill = [at - killed_at for check in checks for at in check["back_at"]]
        p99, all_ = percentile(back, 0.99, args.viewers), percentile(back, 1.0, args.viewers)
        refusals: dict[str, int] = {}
        for check in checks:
            for code, n in check["refusals"].items():
                refusals[code] = refusals.get(code, 0) + n
        recovered = sum(check["recovered_true"] for check in checks)
        results.update(
            events=len(expected),
            published_while_down=args.during,
            back=len(back),
            gave_up=stats["gave_up"],
            back_p50_seconds=round(sorted(back)[len(back) // 2], 2) if back else None,
            back_p99_seconds=round(p99, 2) if p99 is not None else None,
            back_all_seconds=round(all_, 2) if all_ is not None else None,
            back_p99_since_kill_seconds=_round(percentile(since_kill, 0.99, args.viewers)),
            back_all_since_kill_seconds=_round(percentile(since_kill, 1.0, args.viewers)),
            first_back_seconds=round(min(back), 2) if back else None,
            recovered=recovered,
            not_recovered=sum(check["recovered_false"] for check in checks),
            recovered_all=recovered == args.viewers,
            missed=sum(check["missed"] for check in checks),
            duplicated=sum(check["duplicated"] for check in checks),
            http_refusals=refusals,
            server_cpu_seconds=round(cpu_back, 2),
            server_cpu_ms_per_reconnect=round(1000 * cpu_back / max(1, len(back)), 3),
            server_reads_per_reconnect=round((reads_back - reads_ready) / max(1, len(back)), 1),
            server_writes_per_reconnect=round((writes_back - writes_ready) / max(1, len(back)), 1),
            redis_commands_per_reconnect=round(commands / max(1, len(back)), 1),
            redis_cpu_ms_per_reconnect=round(1000 * redis_used / max(1, len(back)), 3),
        )
        return results
    finally:
        with contextlib.suppress(Exception):
            await ask(pipes, ("stop",))
        for child in children:
            child.join(5)
            if child.is_alive():
                child.kill()
        kill_tree(process)
        await client.aclose()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(
            "Reconnect storm: N ticketed viewers on a real `vstudio serve`, kill -9 it, start it "
            "again; time until 99% and 100% are back, recovered flags, missed and repeated "
            "events. Loopback only."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--viewers", type=int, default=10_000, help="viewers (1-15000)")
    parser.add_argument(
        "--processes", type=int, default=2, help="client processes that share the viewers (1-8)"
    )
    parser.add_argument("--workers", type=int, default=1, help="server processes (--workers)")
    parser.add_argument(
        "--browser",
        action="store_true",
        help="each attempt fetches its ticket on one connection and opens the WebSocket on a "
        "new one, as a browser does (default: both on one kept-alive connection, as the "
        "project's Python client does)",
    )
    parser.add_argument("--before", type=int, default=5, help="events every viewer has first")
    parser.add_argument("--during", type=int, default=5, help="events published while down")
    parser.add_argument("--after", type=int, default=3, help="events published once all are back")
    parser.add_argument(
        "--down", type=float, default=0.0, help="extra seconds the server stays down"
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds allowed for the first connect"
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="py-spy the restarted server into FILE (raw stacks)"
    )
    parser.add_argument("--redis-url", help="a Redis to use (default: an embedded Valkey)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not 1 <= args.viewers <= 15_000:
        parser.error("--viewers must be between 1 and 15000 (this is a loopback benchmark)")
    if not 1 <= args.processes <= 8:
        parser.error("--processes must be between 1 and 8")
    raise_file_limit()
    broker = BrokerSettings(redis_url=args.redis_url) if args.redis_url else BrokerSettings()
    with embedded_or_given(broker) as redis, asyncio.Runner(loop_factory=new_loop) as runner:
        results = runner.run(run(args, redis))
    if args.json:
        print(orjson.dumps(results).decode())
    else:
        for key, value in results.items():
            print(f"{key:32} {value}")
    ok = results["recovered_all"] and not results["missed"] and not results["duplicated"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
