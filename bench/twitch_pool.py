"""Many Twitch channels in one worker process through TwitchPool (issue 15).

    python bench/twitch_pool.py [--channels 200] [--rate 5] [--seconds 10] [--json]

A local Twitch IRC-over-WebSocket server in another process (loopback only) answers the JOINs
and then sends ``--rate`` messages per second to each of ``--channels`` channels for
``--seconds``. This process runs one pool and one real :class:`~ingest.runtime.Worker` per
channel, each publishing (deduped) to a session of its own in Redis (``--redis-url``, else
``REDIS_URL``, else an embedded Valkey started for the run; the pool logs in as a bot and
counts its JOINs there too, as a fleet worker's does); with ``--read-only`` the
adapters only count what they emit (the pool's own cost, no worker runtime). Printed: channels per
connection, the time until every channel was joined (with the JOIN pacing given; at Twitch's
20 per 10 s it is computed, not waited for), this process's CPU per message and CPU share
while the messages flow, its RSS, and whether every message sent was published once.

The issue's target for a fleet worker: 500 channels at 5 msg/s in one process, under 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from benchkit import new_loop, raise_file_limit, rss_bytes

from broker import Bus, EmbeddedRedis, connect
from config import IngestSettings
from ingest.base import Emit, IngestItem
from ingest.runtime import Worker
from ingest.twitch_pool import TwitchPool
from tests.support.platforms.twitch_irc import TwitchIrcServer, privmsg

RSS_TARGET = 200 * 1024 * 1024
TICK = 0.1
BOT_TOKEN = "bench"
"""The token the pool logs in with (a bot's, so its JOINs take the account's window)."""
"""Seconds between the server's rounds of messages."""


def serve(channels: list[str], rate: float, seconds: float, pipe: Any) -> None:
    """Runs in its own process: the server; once every channel is joined, ``rate`` messages
    per second to each for ``seconds``; then it sends the count and idles."""

    async def main() -> None:
        async with TwitchIrcServer(valid_tokens={BOT_TOKEN}) as server:
            pipe.send(server.url)
            wanted = set(channels)
            while server.joined() != wanted:
                await asyncio.sleep(0.05)
            pipe.send("joined")
            sent = 0
            owed = 0.0
            started = time.monotonic()
            rounds = 0
            while time.monotonic() - started < seconds:
                owed += rate * TICK
                burst, owed = int(owed), owed - int(owed)
                for channel in channels:
                    for _ in range(burst):
                        sent += 1
                        line = privmsg(f"{channel}-{sent}", f"hello {sent} Kappa", channel=channel)
                        await server.say(channel, line)
                rounds += 1
                await asyncio.sleep(max(0.0, started + rounds * TICK - time.monotonic()))
            pipe.send(sent)
            await asyncio.Event().wait()

    new_loop().run_until_complete(main())


async def measure(redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    channels = [f"bench{n:04d}" for n in range(args.channels)]
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(
        target=serve, args=(channels, args.rate, args.seconds, theirs), daemon=True
    )
    server.start()
    client = await connect(redis_url, max_connections=50)  # callers queue for a connection
    bus = Bus(client, history_size=max(1000, int(args.rate * args.seconds * 2)))
    workers: list[Worker] = []
    tasks: list[asyncio.Task[None]] = []
    run = uuid.uuid4().hex[:6]
    pool: TwitchPool | None = None
    try:
        url = await asyncio.to_thread(ours.recv)
        settings = IngestSettings(
            twitch_irc_url=url,
            twitch_nick="benchbot",  # a login, as a fleet's bot: its JOINs counted in Redis
            twitch_token=BOT_TOKEN,
            twitch_join_limit=args.join_limit,
            twitch_join_window_seconds=args.join_window,
            twitch_channels_per_connection=args.per_connection,
            heartbeat_ttl=30,
        )
        pool = TwitchPool(settings, redis=client, fleet=f"bench{run}")  # as a fleet worker's
        counts = [0] * len(channels)
        adapters = [pool.adapter(ch) for ch in channels]
        if args.read_only:
            workers = []
            emits = [_counter(counts, n) for n in range(len(channels))]
            runs = [adapter.run(emit) for adapter, emit in zip(adapters, emits, strict=True)]
        else:
            workers = [Worker(a, bus, f"tp{run}{a.channel}", settings) for a in adapters]
            runs = [worker.run() for worker in workers]

        def received() -> int:
            return sum(counts) + sum(w.stats.received for w in workers)

        def published() -> int:
            return sum(counts) + sum(w.stats.published for w in workers)

        started = time.perf_counter()
        tasks = [asyncio.create_task(each) for each in runs]
        while not all(a.status.state == "connected" for a in adapters):
            await asyncio.sleep(0.01)
        join_seconds = time.perf_counter() - started
        await asyncio.to_thread(ours.recv)  # the server saw every JOIN too
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        received_before = received()
        sent = await asyncio.to_thread(ours.recv)
        deadline = time.perf_counter() + 30
        while published() < sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        cpu = time.process_time() - cpu_before
        wall = time.perf_counter() - wall_before
        flowed = received() - received_before
        rss = rss_bytes(os.getpid())
        delivered = published()
        connections = pool.opened
    finally:
        for worker in workers:
            worker.stop()
        if args.read_only:
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if pool is not None:
            await pool.aclose()
        server.terminate()
        server.join(5)
        await client.aclose()
    twitch_limit, twitch_window = 20, 10.0
    paced = max(0, len(channels) - twitch_limit) / twitch_limit * twitch_window
    return {
        "channels": len(channels),
        "ratePerChannel": args.rate,
        "seconds": args.seconds,
        "connections": connections,
        "channelsPerConnection": round(len(channels) / max(1, connections), 1),
        "joinSeconds": round(join_seconds, 3),
        "joinLimit": f"{args.join_limit} per {args.join_window:g} s",
        "joinSecondsAtTwitchLimit": paced,
        "messagesSent": sent,
        "readOnly": args.read_only,
        "messagesPublished": delivered,
        "exactlyOnce": delivered == sent,
        "cpuMicrosecondsPerMessage": round(cpu / max(1, flowed) * 1e6, 1),
        "cpuShare": round(cpu / wall, 3),
        "rssMegabytes": round(rss / 1024 / 1024, 1),
        "rssUnderTarget": rss < RSS_TARGET,
    }


def _counter(counts: list[int], index: int) -> Emit:
    def emit(item: IngestItem) -> None:
        counts[index] += 1

    return emit


def show(figures: dict[str, Any]) -> None:
    print(
        f"{figures['channels']} channels at {figures['ratePerChannel']:g} msg/s each for "
        f"{figures['seconds']:g} s, one worker process"
        + (" (read only: the pool, no worker runtime or Redis)" if figures["readOnly"] else "")
    )
    print(
        f"connections: {figures['connections']} "
        f"({figures['channelsPerConnection']:g} channels per connection)"
    )
    print(
        f"all joined in {figures['joinSeconds']:.2f} s (JOINs paced at {figures['joinLimit']}; "
        f"at Twitch's 20 per 10 s: {figures['joinSecondsAtTwitchLimit']:.0f} s)"
    )
    print(
        f"messages: {figures['messagesSent']:,} sent, {figures['messagesPublished']:,} "
        f"{'emitted' if figures['readOnly'] else 'published'} "
        f"({'exactly once' if figures['exactlyOnce'] else 'MISMATCH'})"
    )
    print(
        f"worker CPU: {figures['cpuMicrosecondsPerMessage']:.0f} µs per message, "
        f"{figures['cpuShare']:.0%} of one core while they flowed"
    )
    verdict = "OK" if figures["rssUnderTarget"] else "ABOVE TARGET"
    print(f"RSS: {figures['rssMegabytes']:.0f} MB ({verdict}: target under 200 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=200, choices=range(1, 2001), metavar="N")
    parser.add_argument("--rate", type=float, default=5.0, help="messages/s per channel")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long messages flow")
    parser.add_argument("--per-connection", type=int, default=100)
    parser.add_argument("--join-limit", type=int, default=2000, help="JOINs per window")
    parser.add_argument("--join-window", type=float, default=10.0)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument(
        "--read-only", action="store_true", help="adapters only count: the pool's own cost"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    if not 0 < args.seconds <= 60 or not 0 < args.rate <= 100:
        parser.error("--seconds must be in (0, 60] and --rate in (0, 100]: keep it bounded")
    raise_file_limit()
    with tempfile.TemporaryDirectory() as folder:
        if args.redis_url:
            figures = new_loop().run_until_complete(measure(args.redis_url, args))
        else:
            with EmbeddedRedis(Path(folder)) as embedded:
                figures = new_loop().run_until_complete(measure(embedded.url, args))
    if args.json:
        print(orjson.dumps(figures).decode())
    else:
        show(figures)


if __name__ == "__main__":
    main()
