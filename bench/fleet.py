"""Sources per fleet worker process: memory, CPU, throughput and failover time.

    python bench/fleet.py [--sources 500] [--rate 5] [--ttl 15] [--join-limit 2000]
                          [--redis-url URL] [--json]

A local Twitch IRC-over-WebSocket server (the chatty test fake, in its own process) sends
``--rate`` messages/s on each of ``--sources`` channels; one live session declares them all as
fleet sources, and one ``vstudio worker`` process reads them. Figures, once the worker owns
every source and has run ``--steady`` seconds: its RSS and CPU share, messages/s published.
Then a second worker joins (the fleet rebalances), the first is killed with SIGKILL, and the
time until the second owns every source is the failover time (about one lease TTL).

The worker reads the channels over its Twitch IRC pool (``twitch_channels_per_connection``
channels per connection), its JOINs paced at ``--join-limit`` per 10 s: 2,000 is a verified
bot's limit; a normal account's 20 makes joining 500 channels take over four minutes, and
failover of N channels N/2 seconds on top of the lease TTL.

Target: 500 channels at 5 msg/s each on one worker process, under 200 MB RSS (issue 15).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from benchkit import cpu_seconds, raise_file_limit, rss_bytes

from broker import Bus, EmbeddedRedis, connect, keys
from broker.models import Platform, Session, SessionStatus
from broker.sources import SourceSpec, SourceStore
from ingest.fleet.lease import owner_of
from ingest.fleet.registry import Registry
from server.interactions.sessions import SessionStore
from tests.support.fleet import ChattyTwitch, worker_command, worker_env

TARGET_MB = 200


def serve_chat(rate: float, ready: multiprocessing.Queue[str]) -> None:
    raise_file_limit()

    async def main() -> None:
        async with ChattyTwitch(rate=rate) as server:
            ready.put(server.url)
            await asyncio.Event().wait()

    asyncio.run(main())


async def not_owned_by(bus: Bus, fleet: str, channels: list[str], dead: str) -> int:
    values = await bus.redis.mget([keys.fleet_lease(fleet, f"twitch:{c}", 0) for c in channels])
    return sum(1 for v in values if v is None or owner_of(v) == dead)


async def wait_owned(
    bus: Bus, fleet: str, channels: list[str], timeout: float, dead: str = ""
) -> float:
    """Seconds until every source is owned (by a worker other than ``dead``)."""
    started = time.monotonic()
    while await not_owned_by(bus, fleet, channels, dead):
        if time.monotonic() - started > timeout:
            missing = await not_owned_by(bus, fleet, channels, dead)
            raise SystemExit(f"{missing} sources not owned after {timeout:.0f} s")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


def spawn(env: dict[str, str], capacity: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            worker_command("--capacity", str(capacity)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


async def measure(url: str, args: argparse.Namespace, folder: Path) -> dict[str, object]:
    ready: multiprocessing.Queue[str] = multiprocessing.Queue()
    chat = multiprocessing.Process(target=serve_chat, args=(args.rate, ready), daemon=True)
    chat.start()
    irc_url = ready.get(timeout=30)
    client = await connect(url)
    bus = Bus(client)
    fleet = f"bench{uuid.uuid4().hex[:8]}"
    channels = [f"bench{i:04d}" for i in range(args.sources)]
    session_id = f"fleetbench{uuid.uuid4().hex[:8]}"
    await SessionStore(bus).create(
        Session(id=session_id, artist_id="bench", title="fleet", status=SessionStatus.LIVE)
    )
    store = SourceStore(client, fleet)
    for channel in channels:
        await store.add(session_id, SourceSpec(platform=Platform.TWITCH, target=channel))
    env = worker_env(
        url, fleet, irc_url, fleet_lease_ttl=args.ttl, fleet_renew_interval=args.ttl / 3
    )
    env["VSTUDIO_LOG_LEVEL"] = "WARNING"
    env["VSTUDIO_TWITCH_JOIN_LIMIT"] = str(args.join_limit)
    first = spawn(env, args.sources, folder / "worker1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        claim_s = await wait_owned(bus, fleet, channels, timeout=600)
        stream = keys.stream(session_id)
        await asyncio.sleep(2)
        before_cpu = cpu_seconds(first.pid)
        before_added = (await client.xinfo_stream(stream))["entries-added"]
        started = time.monotonic()
        await asyncio.sleep(args.steady)
        elapsed = time.monotonic() - started
        cpu = (cpu_seconds(first.pid) - before_cpu) / elapsed
        rss = rss_bytes(first.pid)
        published = (await client.xinfo_stream(stream))["entries-added"] - before_added
        # failover: a second worker joins, then the first dies without a word
        second = spawn(env, args.sources, folder / "worker2.log")
        await asyncio.sleep(args.ttl + 5)
        records = await Registry(client, fleet).live_workers()
        first_id = next(r.id for r in records.values() if r.pid == first.pid)
        os.kill(first.pid, signal.SIGKILL)
        failover_s = await wait_owned(bus, fleet, channels, args.ttl * 4 + 60, first_id)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)
        chat.terminate()
        await client.aclose()
    return {
        "sources": args.sources,
        "rate_per_source": args.rate,
        "connections": f"twitch pool, {args.sources} channels, JOINs {args.join_limit}/10 s",
        "claim_all_s": round(claim_s, 2),
        "worker_rss_mb": round(rss / 1e6, 1),
        "worker_cpu": round(cpu, 3),
        "published_per_s": round(published / elapsed, 1),
        "offered_per_s": args.sources * args.rate,
        "lease_ttl_s": args.ttl,
        "failover_s": round(failover_s, 2),
        "target_rss_mb": TARGET_MB,
        "ok": rss / 1e6 < TARGET_MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=500)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--ttl", type=float, default=15.0, help="lease TTL in seconds")
    parser.add_argument("--join-limit", type=int, default=2000, help="Twitch JOINs per 10 s")
    parser.add_argument("--steady", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    raise_file_limit()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if args.redis_url:
            figures = asyncio.run(measure(args.redis_url, args, folder))
        else:
            with EmbeddedRedis(folder / "redis") as embedded:
                figures = asyncio.run(measure(embedded.url, args, folder))
    if args.json:
        print(orjson.dumps(figures).decode())
        return
    for name, value in figures.items():
        print(f"{name:>18}: {value}")
    sys.exit(0 if figures["ok"] else 1)


if __name__ == "__main__":
    main()
