"""What the hardening limits cost on the hot path: each check against a baseline Redis PING.

Measures, on the Redis of ``--redis-url`` (or an embedded Valkey): the per-account chat limit
that every ``chat.message`` and ``reaction.send`` now pays (one sliding-window script), the
login throttle (one check before the password, one more record after a wrong one), and the
connection caps (admit on connect, release on disconnect). For each: the latency of one call
alone (p50, p99, in microseconds) and the calls per second that ``--concurrency`` tasks get.
Also one argon2 verification, which every login pays anyway, for scale. None of these runs per
recipient: the fan-out writes no more and no differently than before. Last, the connection
caps' periodic refresh of ``--places`` open connections (distinct users, one address), in one go:
how long it takes, the CPU it costs this process, and the longest time it held the event loop
without a turn for anything else (a ticker task measures the gaps). A server spreads that work
over half the refresh interval, because CPU taken at once delays every fan-out frame meanwhile.

    python bench/limits.py --calls 2000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from argon2 import PasswordHasher
from benchkit import new_loop

from broker import connect, keys
from broker.models import MessageType
from broker.runtime import redis_url as embedded_or_given
from config import BrokerSettings, ServerSettings
from server.presence import ConnectionQuota
from server.ratelimit import Limit, RedisWindow, account_limits

Call = Callable[[int], Awaitable[object]]


async def measure(call: Call, calls: int, concurrency: int) -> dict[str, float]:
    """p50/p99 of ``calls`` calls one at a time, then calls/s with ``concurrency`` in flight."""
    for n in range(min(50, calls)):  # warm the connection pool and the script cache
        await call(-n - 1)
    latencies = []
    for n in range(calls):
        started = time.perf_counter()
        await call(n)
        latencies.append((time.perf_counter() - started) * 1e6)
    latencies.sort()
    counter = iter(range(calls, calls * 2))

    async def worker() -> None:
        for n in counter:
            await call(n)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "p50_us": round(statistics.median(latencies), 1),
        "p99_us": round(latencies[int(len(latencies) * 0.99) - 1], 1),
        "per_second": round(calls / elapsed),
    }


async def refresh_stall(quota: ConnectionQuota, places: int) -> dict[str, float]:
    """Admit ``places`` connections, then time one refresh and the loop's longest gap meanwhile."""
    for start in range(0, places, 500):
        await asyncio.gather(
            *(quota.admit(f"place{n}", "10.8.0.1") for n in range(start, min(places, start + 500)))
        )
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    await quota.refresh()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu

    longest = 0.0  # a second refresh with a ticker that times the loop's gaps (not its CPU)
    running = True

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await quota.refresh()
    running = False
    await tick
    return {
        "places": places,
        "refresh_ms": round(elapsed * 1000, 1),
        "refresh_cpu_ms": round(cpu * 1000, 1),
        "longest_loop_stall_ms": round(longest * 1000, 1),
    }


async def run(url: str, calls: int, concurrency: int, places: int = 10_000) -> dict[str, Any]:
    client = await connect(url)
    settings = ServerSettings()
    windows = RedisWindow(client)
    quota = ConnectionQuota(client, f"bench-{uuid.uuid4().hex[:6]}", 1_000_000, 1_000_000)
    session = f"bench{uuid.uuid4().hex[:8]}"
    chat_limits = account_limits(settings, MessageType.CHAT_MESSAGE)
    failures = {
        keys.login_failures_user("bench-user"): Limit("user", 1_000_000, 300.0),
        keys.login_failures_address("127.0.0.9"): Limit("address", 1_000_000, 300.0),
    }

    async def ping(n: int) -> object:
        return await client.ping()

    async def chat_limit(n: int) -> object:  # one user per 50 messages: never limited
        user = f"u{n // 50}"
        return await windows.retry_after(keys.account_rate(session, user), chat_limits, time.time())

    async def login_check(n: int) -> object:
        return await windows.wait(failures, time.time())

    async def failed_login(n: int) -> object:
        await windows.wait(failures, time.time())
        return await windows.record(failures, time.time())

    async def connect_and_leave(n: int) -> object:
        hold = await quota.admit(f"u{n % 500}", f"10.9.{n % 200}.1")
        return await quota.release(hold)

    results: dict[str, Any] = {"calls": calls, "concurrency": concurrency}
    try:
        for name, call in (
            ("redis_ping", ping),
            ("chat_account_limit", chat_limit),
            ("login_throttle_check", login_check),
            ("login_throttle_failed_login", failed_login),
            ("connection_caps_admit_release", connect_and_leave),
        ):
            results[name] = await measure(call, calls, concurrency)
        await quota.clear()
        if places:
            results["connection_caps_refresh"] = await refresh_stall(quota, places)
        hasher = PasswordHasher()
        digest = hasher.hash("correct horse battery")
        started = time.perf_counter()
        hasher.verify(digest, "correct horse battery")
        results["argon2_verify_ms"] = round((time.perf_counter() - started) * 1000, 1)
    finally:
        await client.delete(*failures)  # the chat windows expire with their window
        await quota.clear()
        await client.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement")
    parser.add_argument("--concurrency", type=int, default=50, help="tasks in flight")
    parser.add_argument(
        "--places", type=int, default=10_000, help="open connections for the refresh (0: skip)"
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        broker = BrokerSettings(redis_url=args.redis_url, data_dir=Path(data))
        with embedded_or_given(broker) as url, asyncio.Runner(loop_factory=new_loop) as runner:
            results = runner.run(run(url, args.calls, args.concurrency, args.places))
    if args.json:
        print(orjson.dumps(results).decode())
        return
    width = max(len(name) for name in results)
    for name, value in results.items():
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
