"""The TikTok sign server's token bucket: shared through Redis by takers on separate clients,
and the adapter waiting for a token against the local TikTok (page, sign server, push server)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable

import pytest

from broker import Bus, connect, keys
from config import IngestSettings
from ingest.runtime import Worker
from ingest.signbucket import SignBucket, bucket_name, refill
from ingest.tiktok import TikTokAdapter
from tests.support.platforms.tiktok import FakeTikTok


def test_refill_arithmetic() -> None:
    assert refill(0.0, 6_000, per_minute=10, burst=3) == pytest.approx(1.0)
    assert refill(2.5, 60_000, per_minute=10, burst=3) == 3.0  # never past the burst
    assert refill(-1.0, 3_000, per_minute=20, burst=3) == pytest.approx(0.0)


def test_the_bucket_is_named_by_a_hash_of_the_key() -> None:
    assert bucket_name("euler_SECRET") != bucket_name("euler_OTHER")
    assert "SECRET" not in bucket_name("euler_SECRET")
    assert bucket_name(None) == keys.sign_bucket("anonymous")
    assert bucket_name(None).count("{") == 1


def within_rate(grants: list[float], per_second: float, burst: int, slack: float) -> bool:
    """No stretch of time saw more grants than the burst plus what flowed in meanwhile."""
    grants = sorted(grants)
    return all(
        j - i + 1 <= burst + per_second * (grants[j] - grants[i]) + slack
        for i, j in itertools.combinations(range(len(grants)), 2)
    )


async def test_takers_on_two_clients_never_pass_the_rate(bus: Bus, redis_url: str) -> None:
    key = f"euler_{uuid.uuid4().hex}"
    per_second, burst = 20.0, 2
    other = await connect(redis_url)
    try:
        buckets = [
            SignBucket(per_minute=per_second * 60, burst=burst, redis=client)
            for client in (bus.redis, other)
        ]
        grants: list[float] = []

        async def taker(bucket: SignBucket) -> None:
            for _ in range(2):
                await bucket.take(key)
                grants.append(time.monotonic())

        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(taker(bucket) for bucket in buckets for _ in range(4))), 20
        )
    finally:
        await other.aclose()
    assert len(grants) == 16
    # 16 tokens, 2 at once and then 20/s: at least 0.7 s whoever asks from where
    assert max(grants) - started >= (16 - burst) / per_second * 0.9
    assert within_rate(grants, per_second, burst, slack=1.0)


async def test_a_429_drains_the_bucket_for_everyone(bus: Bus) -> None:
    key = f"euler_{uuid.uuid4().hex}"
    bucket = SignBucket(per_minute=6000, burst=5, redis=bus.redis)
    assert await bucket.try_take(key) == 0.0
    await bucket.drain(key, 2.0)  # the sign server: come back in 2 s
    wait = await SignBucket(per_minute=6000, burst=5, redis=bus.redis).try_take(key)
    assert 1.8 <= wait <= 2.0


# --- the adapter against the local TikTok -----------------------------------------------------


async def until(
    check: Callable[[], bool], tasks: list[asyncio.Task], timeout: float = 10.0
) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            for task in tasks:
                if task.done():
                    task.result()
                    raise AssertionError("a worker stopped")
            await asyncio.sleep(0.01)


async def test_adapters_wait_for_the_shared_bucket_before_signing(
    bus: Bus, session_id: str
) -> None:
    key = f"euler_{uuid.uuid4().hex}"
    bucket = SignBucket(per_minute=120, burst=1)  # one connection every 0.5 s; Redis: the worker's
    settings = IngestSettings(batch_interval_ms=5, heartbeat_ttl=5)
    fake = FakeTikTok()
    async with fake.running():
        adapters = [
            TikTokAdapter(
                user="artist",
                sign_url=fake.sign_url,
                sign_api_key=key,
                app_url=fake.url,
                webcast_url=fake.webcast_url,
                sign_bucket=bucket,
            )
            for _ in range(3)
        ]
        workers = [Worker(adapter, bus, session_id, settings) for adapter in adapters]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        try:
            seen: set[str] = set()

            def all_connected() -> bool:
                for adapter in adapters:
                    if adapter.status.state == "rate limited":
                        seen.add(adapter.status.detail)
                return all(adapter.status.state == "connected" for adapter in adapters)

            await until(all_connected, tasks)
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert bucket.redis is bus.redis
    assert len(fake.sign_times) == 3
    gaps = [b - a for a, b in itertools.pairwise(sorted(fake.sign_times))]
    assert min(gaps) >= 0.45, gaps  # the sign server never saw two requests in one token's time
    assert any(
        detail.startswith("sign server: next request in ")
        and detail.endswith("(120/min shared by every worker)")
        for detail in seen
    ), seen
