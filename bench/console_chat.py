"""How much chat the producer console keeps up with, drawing every message at 80x24.

    python bench/console_chat.py [--rates 50,100,200,400] [--seconds 8] [--batch 5]

Runs the real console app headless (Textual's test driver, which still lays out and renders
every frame) and feeds it ``chat.aggregate`` frames of ``--batch`` messages at each rate, as
the server's coalescer would. Prints, per rate: messages drawn per second and the lag between
when a frame was due and when the app took it (p50, p99, max). A console that keeps up draws
at the offered rate with a lag of a few frames. Target: 200 messages/s with p99 lag < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vstudio_cli.console.app import ConsoleApp  # noqa: E402
from vstudio_cli.console.model import ConsoleState  # noqa: E402

PLATFORMS = ("twitch", "youtube", "tiktok", "discord", "audifi")
WORDS = "what a set the bass on this one encore play heroes please hello from lisbon".split()


def message(index: int) -> dict[str, Any]:
    platform = PLATFORMS[index % len(PLATFORMS)]
    words = " ".join(WORDS[(index + k) % len(WORDS)] for k in range(3 + index % 12))
    return {
        "id": f"{platform}:{index}",
        "platform": platform,
        "username": f"fan_{index % 997}",
        "text": words,
        "timestamp": index,
        "isSubscriber": index % 7 == 0,
    }


async def run(rate: float, seconds: float, batch: int) -> tuple[int, float, list[float]]:
    app = ConsoleApp(None, ConsoleState(session_id="bench", status="live"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        interval = batch / rate
        start = time.perf_counter()
        sent = 0
        lags: list[float] = []
        while time.perf_counter() - start < seconds:
            due = start + (sent // batch) * interval
            now = time.perf_counter()
            if now < due:
                await asyncio.sleep(due - now)
            lags.append(time.perf_counter() - due)
            messages = [message(sent + k) for k in range(batch)]
            app.apply({"type": "chat.aggregate", "payload": {"messages": messages}})
            sent += batch
            await asyncio.sleep(0)
        await pilot.pause()
        elapsed = time.perf_counter() - start
    return sent, elapsed, lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200,400", help="messages/s, comma separated")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=5, help="messages per chat.aggregate")
    args = parser.parse_args()
    print(f"{'offered/s':>9} {'drawn/s':>8} {'lag p50':>8} {'p99':>7} {'max':>7}")
    for rate in (float(r) for r in args.rates.split(",")):
        sent, elapsed, lags = asyncio.run(run(rate, args.seconds, args.batch))
        lags.sort()
        p50 = statistics.median(lags) * 1000
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000
        print(
            f"{rate:>9.0f} {sent / elapsed:>8.0f} {p50:>6.0f}ms {p99:>5.0f}ms "
            f"{lags[-1] * 1000:>5.0f}ms"
        )


if __name__ == "__main__":
    main()
