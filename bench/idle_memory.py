"""Idle memory per WebSocket connection, by where it was allocated (tracemalloc).

RSS per connection (``fanout.py``) says how much; this says what. The server runs in this
process, as ``vstudio serve`` runs it, with ``tracemalloc`` on; a thread creates a live session
and tickets, connects a few warm-up viewers, takes a snapshot, connects ``--viewers`` cheap
viewers (raw-socket clients in a child process, as in ``fanout.py``), waits, takes another, and
prints the Python bytes allocated per connection and still alive, grouped by call stack and
named by its innermost frame and the innermost frame in this repository.

    python bench/idle_memory.py --viewers 1000
    python bench/idle_memory.py --viewers 1000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import linecache
import multiprocessing
import os
import queue
import signal
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from benchkit import ROOT, raise_file_limit
from fanout import cheap_clients_main

from broker import connect
from broker.models import Role
from config import BrokerSettings, ServerSettings
from server.identity.auth import Identity, mint_token
from server.identity.tickets import TicketStore
from server.serve import run

SECRET = "bench-secret-bench-secret-bench-secret"
WARM_UP = 50
"""Viewers connected before the first snapshot, so one-time allocations are not counted."""


def _name(frame: tracemalloc.Frame, source: bool) -> str:
    where = frame.filename.replace(f"{ROOT}/", "").split("site-packages/")[-1]
    line = linecache.getline(frame.filename, frame.lineno).strip() if source else ""
    return f"{where}:{frame.lineno}" + (f"  {line}" if line else "")


def _site(trace: tracemalloc.Traceback) -> dict[str, str]:
    """The innermost frame and the innermost one of ours (not this file, not the server's
    start-up, through which every connection's protocol comes)."""
    frames = list(trace)  # oldest first
    ours = [
        f
        for f in frames
        if f.filename.startswith(str(ROOT))
        and not f.filename.endswith(("idle_memory.py", "serve.py", "guard.py"))
    ]
    return {
        "at": _name(frames[-1], source=True),
        "ours": _name(ours[-1], source=True) if ours and ours[-1] is not frames[-1] else "",
    }


async def _measure(base: str, args: argparse.Namespace) -> dict[str, Any]:
    client = await connect(args.redis_url)
    artist = f"bench-artist-{os.getpid()}-{int(time.time())}"
    headers = {"Authorization": f"Bearer {mint_token(SECRET, user_id=artist, role='artist')}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(base + "/v1/vstudio/sessions", json={"title": "bench"}) as r:
            sid = (await r.json())["id"]
        async with http.post(f"{base}/v1/vstudio/sessions/{sid}/start") as r:
            assert r.status == 200, await r.text()
    tickets = TicketStore(client, ttl=600)
    paths = []
    for n in range(WARM_UP + args.viewers):
        ticket = await tickets.issue(Identity(f"v{n}", f"v{n}", Role.VIEWER), sid, Role.VIEWER)
        paths.append(f"/v1/vstudio/ws?ticket={ticket}")
    await client.aclose()
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=cheap_clients_main, args=(theirs,), daemon=True)
    child.start()
    loop = asyncio.get_running_loop()
    host, port = base.split("//", 1)[1].split(":")

    async def ask(*command: Any) -> Any:
        ours.send(command)
        return await loop.run_in_executor(None, ours.recv)

    await ask("connect", host, int(port), paths[:WARM_UP])
    await asyncio.sleep(args.settle)
    gc.collect()
    before = tracemalloc.take_snapshot()
    connected, _ = await ask("connect", host, int(port), paths[WARM_UP:])
    await asyncio.sleep(args.settle)
    gc.collect()
    after = tracemalloc.take_snapshot()
    await ask("close")
    await ask("quit")
    child.join(5)
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "traceback")
    n = max(1, connected)
    sites = [
        {
            "bytes": round(s.size_diff / n, 1),
            "objects": round(s.count_diff / n, 2),
            **_site(s.traceback),
        }
        for s in stats
        if abs(s.size_diff) / n >= args.min_bytes
    ]
    return {
        "viewers": args.viewers,
        "connected": connected,
        "bytes_per_connection": round(sum(s.size_diff for s in stats) / n),
        "sites": sites[: args.top],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=20, help="call stack depth kept")
    parser.add_argument("--top", type=int, default=40, help="sites listed")
    parser.add_argument("--min-bytes", type=float, default=8.0, help="per connection, to list")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before a snapshot")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        required="REDIS_URL" not in os.environ,
        help="the Redis to use (default: $REDIS_URL)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    raise_file_limit()
    data = tempfile.mkdtemp(prefix="vstudio-bench-")
    os.environ.update(
        VSTUDIO_JWT_SECRET=SECRET,
        VSTUDIO_MAX_VIEWERS="1000000",
        VSTUDIO_MAX_CONNECTIONS_PER_ADDRESS="0",  # every viewer is 127.0.0.1
        VSTUDIO_MAX_PENDING_CONNECTIONS_PER_ADDRESS="0",
        VSTUDIO_HEARTBEAT_INTERVAL="600",
    )
    urls: queue.Queue[str] = queue.Queue()
    results: dict[str, Any] = {}

    def drive() -> None:
        try:
            results.update(asyncio.run(_measure(urls.get(timeout=60), args)))
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the server drains and run() returns

    tracemalloc.start(args.frames)
    threading.Thread(target=drive, daemon=True).start()
    run(
        ServerSettings(port=0),
        BrokerSettings(redis_url=args.redis_url, data_dir=Path(data)),
        log_level="ERROR",  # a mass close under tracemalloc times out some Redis waits
        announce=lambda line: urls.put(line.split("listening on ", 1)[1].split()[0]),
    )
    if args.json:
        print(orjson.dumps(results).decode())
        return
    print(f"connected {results['connected']}: {results['bytes_per_connection']} B per connection")
    for site in results["sites"]:
        ours = f"\n{'':18}<- {site['ours']}" if site["ours"] else ""
        print(f"{site['bytes']:8.1f} B {site['objects']:5.2f}  {site['at']}{ours}")


if __name__ == "__main__":
    main()
