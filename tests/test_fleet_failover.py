"""Worker processes on a real Redis: kill -9 one, add one, and count what reached the session.

Three ``vstudio worker`` processes share twelve Twitch channels of the chatty IRC fake (5
messages/s each). A worker killed with SIGKILL leaves its leases to expire (TTL 3 s here); the
others own every source again within the TTL + 5 s. With redundancy 2, every message the fake
sent reaches the session exactly once; with redundancy 1 the gap is measured and printed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from broker import Bus, keys
from broker.sources import SourceSpec, SourceStore
from ingest.fleet.lease import owner_of
from ingest.fleet.registry import Registry
from tests.support.fleet import ChattyTwitch, chat_ids, spawn_worker, stop_all, worker_env
from tests.test_fleet import channel_of, live_session

pytestmark = pytest.mark.slow

TTL = 3.0
RATE = 5.0
CHANNELS = [f"chan{i:02d}" for i in range(12)]


@pytest.fixture
async def twitch() -> AsyncIterator[ChattyTwitch]:
    async with ChattyTwitch(rate=RATE) as server:
        yield server


async def owners(bus: Bus, fleet: str, redundancy: int) -> dict[tuple[str, int], str | None]:
    slots = [(c, r) for c in CHANNELS for r in range(redundancy)]
    values = await bus.redis.mget([keys.fleet_lease(fleet, f"twitch:{c}", r) for c, r in slots])
    return {slot: owner_of(v) for slot, v in zip(slots, values, strict=True)}


async def wait_owned(
    bus: Bus, fleet: str, redundancy: int, alive: set[str] | None, timeout: float
) -> float:
    """Seconds until every reading is owned (by one of ``alive`` when given)."""
    started = time.monotonic()
    while True:
        current = await owners(bus, fleet, redundancy)
        if all(o is not None and (alive is None or o in alive) for o in current.values()):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"not all owned: {current}"
        await asyncio.sleep(0.1)


async def start_fleet(
    bus: Bus, twitch: ChattyTwitch, redis_url: str, redundancy: int, workers: int = 3
) -> tuple[str, str, dict[str, str], list[subprocess.Popen[bytes]]]:
    fleet = f"f{uuid.uuid4().hex[:10]}"
    session_id = await live_session(bus)
    store = SourceStore(bus.redis, fleet)
    for channel in CHANNELS:
        await store.add(session_id, SourceSpec(platform="twitch", target=channel))
    env = worker_env(
        redis_url,
        fleet,
        twitch.url,
        fleet_lease_ttl=TTL,
        fleet_renew_interval=1,
        fleet_reconcile_interval=0.5,
        batch_interval_ms=20,
    )
    processes = [spawn_worker(env, "--redundancy", str(redundancy)) for _ in range(workers)]
    await wait_owned(bus, fleet, redundancy, None, timeout=60)
    return fleet, session_id, env, processes


def once_each(ids: list[str]) -> dict[str, set[int]]:
    assert len(ids) == len(set(ids)), "a message reached the session twice"
    got: dict[str, set[int]] = {}
    for message_id in ids:
        channel, n = channel_of(message_id)
        got.setdefault(channel, set()).add(n)
    return got


async def kill_one(bus: Bus, fleet: str, workers: int = 3) -> tuple[str, list[str], set[str]]:
    """SIGKILL the worker with the most readings; its id, its sources, the survivors' ids.

    Waits until all ``workers`` are listed: on a loaded machine a worker's liveness mark can
    lapse for a moment, and a survivor left out of the list would fail ``wait_owned`` for the
    readings it rightly holds.
    """
    deadline = time.monotonic() + 30
    while len(records := await Registry(bus.redis, fleet).live_workers()) < workers:
        assert time.monotonic() < deadline, f"only {sorted(records)} of {workers} are listed"
        await asyncio.sleep(0.1)
    victim = max(records.values(), key=lambda r: r.load)
    os.kill(victim.pid, signal.SIGKILL)
    return victim.id, victim.sources, set(records) - {victim.id}


async def test_kill_9_with_redundancy_2_loses_nothing(
    bus: Bus, twitch: ChattyTwitch, redis_url: str
) -> None:
    fleet, session_id, _, processes = await start_fleet(bus, twitch, redis_url, 2)
    try:
        await asyncio.sleep(2)
        killed_at = time.monotonic()
        _, sources, survivors = await kill_one(bus, fleet)
        assert sources  # it was reading something
        took = await wait_owned(bus, fleet, 2, survivors, timeout=TTL + 5)
        print(f"\nredundancy 2: every source owned again {took:.2f} s after kill -9")
        await asyncio.sleep(2)
        settled = time.monotonic() - 1.0
        got = once_each(await chat_ids(bus.redis, session_id))
        for channel in CHANNELS:
            sent = {n for n, at in twitch.sent_at[channel].items() if at <= settled}
            first = min(got[channel])
            assert first <= min(n for n, at in twitch.sent_at[channel].items() if at >= killed_at)
            missing = {n for n in sent if n >= first} - got[channel]
            assert missing == set(), f"{channel}: {len(missing)} lost"
    finally:
        errors = list(stop_all(processes))
    assert all("Traceback" not in e for e in errors), errors


async def test_kill_9_with_redundancy_1_fails_over_within_the_ttl_and_the_gap_is_printed(
    bus: Bus, twitch: ChattyTwitch, redis_url: str
) -> None:
    fleet, session_id, _, processes = await start_fleet(bus, twitch, redis_url, 1)
    try:
        await asyncio.sleep(2)
        _, sources, survivors = await kill_one(bus, fleet)
        took = await wait_owned(bus, fleet, 1, survivors, timeout=TTL + 5)
        await asyncio.sleep(2)
        got = once_each(await chat_ids(bus.redis, session_id))
        moved = [s.removeprefix("twitch:").partition("#")[0] for s in sources]
        gaps = []
        for channel in moved:
            ns = sorted(got[channel])
            gaps.append(max(b - a - 1 for a, b in itertools.pairwise(ns)) / RATE)
        print(
            f"\nredundancy 1: owned again {took:.2f} s after kill -9; chat gap per moved "
            f"source {min(gaps):.1f}-{max(gaps):.1f} s (lease TTL {TTL:g} s)"
        )
        assert max(gaps) <= TTL + 5
    finally:
        list(stop_all(processes))


async def test_a_new_worker_takes_its_share_without_duplicates(
    bus: Bus, twitch: ChattyTwitch, redis_url: str
) -> None:
    fleet, session_id, env, processes = await start_fleet(bus, twitch, redis_url, 1)
    try:
        registry = Registry(bus.redis, fleet)
        processes.append(spawn_worker(env))
        deadline = time.monotonic() + 30
        while True:
            loads = sorted(r.load for r in (await registry.live_workers()).values())
            if loads == [3, 3, 3, 3]:
                break
            assert time.monotonic() < deadline, loads
            await asyncio.sleep(0.2)
        await wait_owned(bus, fleet, 1, None, timeout=5)
        await asyncio.sleep(1)
        assert max(twitch.readers.values()) == 1  # no channel read twice
        once_each(await chat_ids(bus.redis, session_id))
    finally:
        list(stop_all(processes))
