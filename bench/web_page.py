"""Web page benchmark: how fast one fan's page in headless Chromium keeps up with busy chat.

Starts ``vstudio serve`` on a free port (against ``--redis-url``, ``REDIS_URL`` or an embedded
Valkey), creates a live session that allows guests, opens ``/s/{id}`` in Debian's Chromium
through Playwright and joins as a guest, then publishes chat through the bus as ingestion
workers do, at ``--rate`` messages per second for ``--duration`` seconds. The page records
when each message appears in its chat list. Prints: time from navigation to "live", messages
shown / published, publish-to-screen latency p50/p99/max, the page's long tasks (main thread
busy > 50 ms) and its JS heap after the run.

    python bench/web_page.py --rate 200 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from broker import Bus, connect  # noqa: E402
from broker.bus import OutgoingEvent  # noqa: E402
from broker.embedded import any_free_port  # noqa: E402
from broker.models import MessageType, NormalizedChatMessage, Platform  # noqa: E402
from broker.runtime import redis_url as embedded_or_given  # noqa: E402
from config import BrokerSettings  # noqa: E402
from server.identity.auth import mint_token  # noqa: E402

SECRET = "bench-secret-bench-secret-bench-secret"
CHROMIUM = os.environ.get("VSTUDIO_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

WATCH_CHAT = """() => {
  window.__seen = [];
  window.__long = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__long.push(entry.duration);
  }).observe({ entryTypes: ["longtask"] });
  new MutationObserver((records) => {
    const now = Date.now();
    for (const record of records) {
      for (const node of record.addedNodes) {
        const text = node.querySelector?.(".text")?.textContent ?? "";
        const match = /^bench (\\d+) /.exec(text);
        if (match) window.__seen.push(now - Number(match[1]));
      }
    }
  }).observe(document.getElementById("chat-list"), { childList: true });
}"""


def start_server(redis_url: str, port: int, data: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VSTUDIO_REDIS_URL": redis_url,
        "VSTUDIO_JWT_SECRET": SECRET,
        "VSTUDIO_DATA_DIR": str(data),
    }
    env.pop("VSTUDIO_CONFIG", None)
    command = [sys.executable, "-m", "vstudio_cli.main", "serve", "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("vstudio serve did not start")


async def live_session(base_url: str) -> str:
    import aiohttp

    artist = f"bench-artist-{uuid.uuid4().hex[:6]}"
    headers = {"Authorization": f"Bearer {mint_token(SECRET, user_id=artist, role='artist')}"}
    async with aiohttp.ClientSession(base_url, headers=headers) as http:
        body = {"title": "Bench", "allowGuests": True}
        async with http.post("/v1/vstudio/sessions", json=body) as response:
            session = await response.json()
        async with http.post(f"/v1/vstudio/sessions/{session['id']}/start") as response:
            response.raise_for_status()
    return str(session["id"])


async def publish_chat(bus: Bus, session_id: str, rate: int, duration: float) -> int:
    """Publish ``rate`` messages a second in batches every 20 ms, as a worker batches."""
    sent = 0
    start = time.monotonic()
    tick = 0.02
    while (elapsed := time.monotonic() - start) < duration:
        due = int(elapsed * rate) + 1
        events = []
        while sent < due:
            stamp = int(time.time() * 1000)
            message = NormalizedChatMessage(
                id=f"twitch:bench-{sent}",
                platform=Platform.TWITCH,
                username=f"viewer{sent % 500}",
                text=f"bench {stamp} message number {sent} with a few words of chat",
                timestamp=stamp,
            )
            events.append(
                OutgoingEvent(MessageType.CHAT_MESSAGE, message.wire(), dedupe_id=message.id)
            )
            sent += 1
        if events:
            await bus.publish_many(session_id, "chat", events)
        await asyncio.sleep(tick)
    return sent


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    with (
        tempfile.TemporaryDirectory() as tmp,
        embedded_or_given(
            BrokerSettings(redis_url=args.redis_url, data_dir=Path(tmp) / "redis")
        ) as redis_url,
    ):
        port = any_free_port("127.0.0.1")
        server = start_server(redis_url, port, Path(tmp) / "data")
        client = await connect(redis_url)
        try:
            base_url = f"http://127.0.0.1:{port}"
            session_id = await live_session(base_url)
            bus = Bus(client)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = await browser.new_page()
                began = time.monotonic()
                await page.goto(f"{base_url}/s/{session_id}")
                await page.click("#guest-button")
                await page.wait_for_selector("#conn[data-state=live]")
                to_live = time.monotonic() - began
                await page.evaluate(WATCH_CHAT)
                sent = await publish_chat(bus, session_id, args.rate, args.duration)
                await asyncio.sleep(1.0)
                seen: list[float] = await page.evaluate("window.__seen")
                long_tasks: list[float] = await page.evaluate("window.__long")
                heap = await page.evaluate("performance.memory?.usedJSHeapSize ?? 0")
                shown = await page.locator("#chat-list .msg").count()
                await browser.close()
        finally:
            await client.aclose()
            server.terminate()
            server.wait(20)
    print(f"rate {args.rate} msg/s for {args.duration:.0f} s, one page in headless Chromium")
    print(f"navigation to live (page, guest sign-in, ticket, WebSocket): {to_live * 1000:.0f} ms")
    print(f"messages shown / published: {len(seen)} / {sent} (list keeps the newest {shown})")
    if seen:
        print(
            "publish-to-screen latency ms: "
            f"p50 {statistics.median(seen):.0f}  p99 {percentile(seen, 0.99):.0f}  "
            f"max {max(seen):.0f}"
        )
    busy = sum(long_tasks)
    print(
        f"long tasks (>50 ms on the main thread): {len(long_tasks)}, {busy:.0f} ms in total "
        f"over {args.duration:.0f} s"
    )
    print(f"JS heap after the run: {heap / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=200, help="chat messages per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of chat")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        help="Redis to use; unset starts an embedded Valkey",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
