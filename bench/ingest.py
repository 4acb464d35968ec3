"""How many messages per second one ingestion worker parses, normalizes and publishes.

    python bench/ingest.py [--messages 100000] [--redis-url URL] [--lines-per-frame 1]

Three figures, each for one worker process against a real Redis (``--redis-url``, else
``REDIS_URL``, else an embedded Valkey started for the run):

1. ``parse``: Twitch IRC lines through the pure protocol to NormalizedChatMessage, no I/O.
2. ``twitch``: recorded Twitch IRC lines sent by a local IRC-over-WebSocket server running in
   another process, read by the real adapter, batched and published (deduped) to a session.
3. ``replay``: a JSON-lines recording through ``ReplayFile`` at ``--speed 0``, published.

After the ``twitch`` run it prints what the session's dedupe memory costs in Redis: ids
remembered, bytes (``MEMORY USAGE`` of its keys) and bytes per remembered id. ``--json``
prints the figures as one JSON object instead.

Targets: 20,000 messages/s per worker; under 100 bytes per remembered id (issue 14).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from broker import Bus, EmbeddedRedis, connect  # noqa: E402
from broker.models import NormalizedChatMessage, Platform  # noqa: E402
from config import IngestSettings  # noqa: E402
from ingest.replay import ReplayFile  # noqa: E402
from ingest.runtime import Worker  # noqa: E402
from ingest.simulate import ChatGenerator  # noqa: E402
from ingest.twitch import TwitchChat, TwitchProtocol  # noqa: E402
from tests.support.platforms.twitch_irc import TwitchIrcServer  # noqa: E402

TARGET = 20_000
DEDUPE_TARGET = 100


def irc_line(message: NormalizedChatMessage) -> str:
    """A message as Twitch would send it: full tag set, emotes, badges."""
    emotes = "/".join(
        f"{e.url.split('/')[-4]}:" + ",".join(f"{a}-{b}" for a, b in e.positions)
        for e in message.emotes or []
    )
    badges = ",".join(f"{badge}/1" for badge in message.badges or [])
    msg_id = message.id.split(":", 1)[1]
    display = (message.display_name or message.username).replace(" ", "\\s")
    user = message.username
    return (
        f"@badge-info=;badges={badges};client-nonce={uuid.uuid4().hex};color=#8A2BE2;"
        f"display-name={display};emotes={emotes};first-msg=0;flags=;id={msg_id};"
        f"mod={int(bool(message.is_moderator))};returning-chatter=0;room-id=71092938;"
        f"subscriber={int(bool(message.is_subscriber))};tmi-sent-ts={message.timestamp};turbo=0;"
        f"user-id={message.user_id};user-type= :{user}!{user}@{user}.tmi.twitch.tv "
        f"PRIVMSG #benchmark :{message.text}"
    )


def recorded_lines(count: int) -> list[str]:
    generator = ChatGenerator(seed=2024)
    start = 1_700_000_000_000
    return [irc_line(generator.message(start + n, platform=Platform.TWITCH)) for n in range(count)]


def serve_lines(lines: list[str], lines_per_frame: int, ready: multiprocessing.Queue) -> None:
    """Runs in its own process: a local Twitch IRC server playing ``lines`` once."""

    async def main() -> None:
        async with TwitchIrcServer([lines], lines_per_frame=lines_per_frame) as server:
            ready.put(server.url)
            await asyncio.Event().wait()

    asyncio.run(main())


def bench_parse(lines: list[str]) -> float:
    protocol = TwitchProtocol("benchmark", "justinfan1")
    started = time.perf_counter()
    produced = 0
    for line in lines:
        items, _ = protocol.receive(line)
        for item in items:
            item.wire()
            produced += 1
    elapsed = time.perf_counter() - started
    assert produced == len(lines), (produced, protocol.last_error)
    return produced / elapsed


async def run_until_published(worker: Worker, count: int) -> tuple[float, float]:
    """Wall seconds from the first item received to ``count`` published, and this process's
    CPU seconds in that time (the worker's own cost, whatever else the machine runs)."""
    running = asyncio.create_task(worker.run())
    while worker.stats.received == 0:
        await asyncio.sleep(0.0005)
        if running.done():
            running.result()
    started = time.perf_counter()
    cpu_started = time.process_time()
    while worker.stats.published + worker.stats.duplicates < count:
        await asyncio.sleep(0.001)
        if running.done():
            running.result()
            break
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    worker.stop()
    await running
    assert worker.stats.published == count, worker.stats
    return elapsed, cpu


async def bench_twitch(url: str, bus: Bus, count: int) -> tuple[float, float, str]:
    settings = IngestSettings(twitch_irc_url=url)
    session = f"bench{uuid.uuid4().hex[:8]}"
    worker = Worker(TwitchChat("benchmark", settings), bus, session, settings)
    wall, cpu = await run_until_published(worker, count)
    return count / wall, count / cpu, session


async def bench_replay(path: Path, bus: Bus, count: int) -> tuple[float, float]:
    session = f"bench{uuid.uuid4().hex[:8]}"
    worker = Worker(ReplayFile(path, speed=0), bus, session, IngestSettings())
    wall, cpu = await run_until_published(worker, count)
    return count / wall, count / cpu


class Figures(dict[str, object]):
    """What the run measured, printed as it goes or as one JSON object at the end."""

    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def say(self, line: str) -> None:
        if not self.as_json:
            print(line)


def report(figures: Figures, key: str, name: str, rates: tuple[float, float]) -> None:
    """Wall-clock rate against the target, and the rate per CPU-second of the worker."""
    wall, cpu = rates
    verdict = "OK" if wall >= TARGET else "BELOW TARGET"
    figures[key] = {"msgPerSecond": round(wall), "perCpuSecond": round(cpu)}
    figures.say(
        f"{name:<62} {wall:>8,.0f} msg/s  {verdict:<12} (per worker CPU-second: {cpu:,.0f})"
    )


async def report_dedupe(figures: Figures, bus: Bus, session: str) -> None:
    """The bytes Redis holds to remember the session's message ids."""
    remembered, used = await bus.dedupe_memory(session)
    per_id = used / remembered if remembered else 0.0
    verdict = "OK" if per_id < DEDUPE_TARGET else "ABOVE TARGET"
    figures["dedupe"] = {"ids": remembered, "bytes": used, "bytesPerId": round(per_id, 1)}
    name = "dedupe  (ids remembered, Redis bytes, bytes per id):"
    figures.say(
        f"{name:<62} {remembered:>8,} ids  {used:,} B  {per_id:.1f} B/id  {verdict}"
        f" (cap {bus.dedupe_cap:,} per session)"
    )


async def measure(redis_url: str, count: int, lines_per_frame: int, as_json: bool) -> None:
    figures = Figures(as_json)
    lines = recorded_lines(count)
    python = sys.version.split()[0]
    figures["messages"] = count
    figures.say(f"messages: {count:,}; target {TARGET:,} messages/s per worker; python {python}")
    name = "parse   (pure IRC protocol -> NormalizedChatMessage.wire()):"
    parsed = bench_parse(lines)
    figures["parse"] = {"msgPerSecond": round(parsed)}
    figures.say(f"{name:<62} {parsed:>8,.0f} msg/s")

    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue = context.Queue()
    server = context.Process(target=serve_lines, args=(lines, lines_per_frame, ready), daemon=True)
    server.start()
    client = await connect(redis_url)
    bus = Bus(client, history_size=count * 2)
    try:
        url = ready.get(timeout=30)
        wall, cpu, session = await bench_twitch(url, bus, count)
        report(
            figures,
            "twitch",
            f"twitch  (local IRC-over-WS server, {lines_per_frame} line/frame -> Redis):",
            (wall, cpu),
        )
        await report_dedupe(figures, bus, session)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "recorded.jsonl"
            generator = ChatGenerator(seed=99, deletion_share=0, event_share=0)
            with path.open("wb") as handle:
                for n in range(count):
                    handle.write(orjson.dumps(generator.message(1_700_000_000_000 + n).wire()))
                    handle.write(b"\n")
            report(
                figures,
                "replay",
                "replay  (JSON lines, --speed 0 -> Redis):",
                await bench_replay(path, bus, count),
            )
    finally:
        server.terminate()
        server.join(5)
        await client.aclose()
    if as_json:
        print(orjson.dumps(dict(figures)).decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--lines-per-frame", type=int, default=1)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    runner = asyncio.run
    if args.loop == "uvloop":
        import uvloop

        runner = uvloop.run
    if not args.json:
        print(f"event loop: {args.loop}")
    if args.redis_url:
        if not args.json:
            print(f"redis: {args.redis_url}")
        runner(measure(args.redis_url, args.messages, args.lines_per_frame, args.json))
        return
    with tempfile.TemporaryDirectory() as folder, EmbeddedRedis(Path(folder)) as embedded:
        if not args.json:
            print(f"redis: embedded Valkey at {embedded.url}")
        runner(measure(embedded.url, args.messages, args.lines_per_frame, args.json))


if __name__ == "__main__":
    main()
