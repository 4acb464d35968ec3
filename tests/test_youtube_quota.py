"""YouTube quota per API key: the Pacific-day arithmetic, and the Redis ledger shared by every
adapter polling the local Data API with one key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from broker import Bus, keys
from config import IngestSettings
from ingest.base import AdapterFatal, IngestItem
from ingest.quota import (
    QuotaLedger,
    cost_of,
    key_fingerprint,
    quota_day,
    resets_at,
    spent_detail,
)
from ingest.runtime import Worker
from ingest.youtube import YouTubeAdapter
from tests.support.platforms.youtube import FakeYouTube, chat_item, error_body

# --- the quota day, pure ----------------------------------------------------------------------


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]  # year, month, day, ...


@pytest.mark.parametrize(
    ("now", "day", "reset"),
    [
        # summer, PDT (UTC-7): 06:59 UTC is still the day before in California
        (utc(2026, 7, 1, 6, 59), "2026-06-30", utc(2026, 7, 1, 7)),
        (utc(2026, 7, 1, 7, 0), "2026-07-01", utc(2026, 7, 2, 7)),
        # winter, PST (UTC-8)
        (utc(2026, 1, 15, 7, 59), "2026-01-14", utc(2026, 1, 15, 8)),
        (utc(2026, 1, 15, 8, 0), "2026-01-15", utc(2026, 1, 16, 8)),
        # a quota day that starts in PST and ends in PDT: 8 March 2026 is 23 hours long
        (utc(2026, 3, 8, 12), "2026-03-08", utc(2026, 3, 9, 7)),
        # and the one that falls back: 1 November 2026 is 25 hours long
        (utc(2026, 11, 1, 7, 30), "2026-11-01", utc(2026, 11, 2, 8)),
        (utc(2026, 11, 2, 7, 59), "2026-11-01", utc(2026, 11, 2, 8)),
    ],
)
def test_the_quota_day_is_the_date_in_california(now: datetime, day: str, reset: datetime) -> None:
    assert quota_day(now).isoformat() == day
    assert resets_at(now) == reset
    assert resets_at(now).astimezone(UTC).tzinfo is UTC


def test_dst_days_are_23_and_25_hours() -> None:
    spring, autumn = utc(2026, 3, 8, 12), utc(2026, 11, 1, 12)
    assert resets_at(spring) - resets_at(spring - timedelta(days=1)) == timedelta(hours=23)
    assert resets_at(autumn) - resets_at(autumn - timedelta(days=1)) == timedelta(hours=25)


def test_costs_and_what_people_read() -> None:
    assert [cost_of(r) for r in ("liveChat/messages", "videos", "channels", "search")] == [
        5,
        1,
        1,
        100,
    ]
    assert cost_of("somethingNew") == 1  # every request costs at least one unit
    detail = spent_detail("AIzaSECRETabcd", utc(2026, 7, 1, 5, 30))
    assert detail == "quota for key …abcd spent; resets at 00:00 PT (in 1 h 30 min)"


def test_the_key_itself_never_reaches_redis() -> None:
    ledger = QuotaLedger()
    name = ledger.counter("AIzaSECRET", utc(2026, 7, 1, 12))
    assert "AIzaSECRET" not in name and key_fingerprint("AIzaSECRET") in name
    assert name == keys.youtube_quota(key_fingerprint("AIzaSECRET"), "2026-07-01")
    assert name.count("{") == 1 and name.endswith(":2026-07-01")  # one hash tag per key


# --- the ledger on Redis ----------------------------------------------------------------------


def new_key() -> str:
    return f"AIza{uuid.uuid4().hex}"


async def test_concurrent_charges_never_pass_the_limit(bus: Bus) -> None:
    key = new_key()
    first, second = QuotaLedger(per_day=100, redis=bus.redis), QuotaLedger(per_day=100)
    second.redis = bus.redis
    charges = await asyncio.gather(
        *(ledger.charge(key, 5) for _ in range(30) for ledger in (first, second))
    )
    assert sum(c.allowed for c in charges) == 20
    assert await first.used(key) == 100
    assert not (await second.charge(key, 1)).allowed  # full: even one unit is refused


# --- adapters against the local API -----------------------------------------------------------


async def until(check: Callable[[], bool], task: asyncio.Task, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            if task.done():
                task.result()
                raise AssertionError("the adapter stopped")
            await asyncio.sleep(0.02)


def charged(fake: FakeYouTube) -> int:
    """Units the calls the fake saw cost."""
    return sum(cost_of(r.path.removeprefix("/youtube/v3/")) for r in fake.requests)


async def test_two_adapters_with_one_key_share_the_count(bus: Bus) -> None:
    key = new_key()
    ledger = QuotaLedger(redis=bus.redis)
    fakes = [
        FakeYouTube(
            video_id=f"Live{n}234567",
            chat_id=f"CHAT{n}",
            api_key=key,
            pages=[[chat_item(f"m{n}a")], [chat_item(f"m{n}b")], []],
            offline_after_pages=True,
        )
        for n in (1, 2)
    ]
    async with fakes[0].running(), fakes[1].running():
        adapters = [
            YouTubeAdapter(video_id=fake.video_id, api_url=fake.url, api_key=key, quota=ledger)
            for fake in fakes
        ]
        ends = await asyncio.gather(
            *(a.run(lambda item: None) for a in adapters), return_exceptions=True
        )
    assert all(isinstance(end, AdapterFatal) and "went offline" in str(end) for end in ends)
    assert [len(f.calls("liveChat/messages")) for f in fakes] == [4, 4]
    assert await ledger.used(key) == charged(fakes[0]) + charged(fakes[1]) == 2 * (1 + 4 * 5)


async def test_a_key_at_its_limit_stops_calling_until_the_pacific_midnight(bus: Bus) -> None:
    key = new_key()
    clock = [utc(2026, 7, 2, 6, 0)]  # 23:00 PDT
    ledger = QuotaLedger(per_day=11, redis=bus.redis, recheck=0.05, clock=lambda: clock[0])
    fake = FakeYouTube(api_key=key, pages=[[chat_item(f"m{i}")] for i in range(10)])
    items: list[IngestItem] = []
    async with fake.running():
        adapter = YouTubeAdapter(
            video_id=fake.video_id, api_url=fake.url, api_key=key, quota=ledger
        )
        task = asyncio.create_task(adapter.run(items.append))
        try:
            await until(lambda: adapter.status.state == "backing off", task)
            seen = len(fake.requests)
            await asyncio.sleep(0.4)  # eight polling intervals: no call goes out
            assert len(fake.requests) == seen == 3  # videos.list 1 + two polls of 5 = 11
            assert adapter.status.detail == (
                f"quota for key …{key[-4:]} spent; resets at 00:00 PT (in 1 h 00 min)"
            )
            assert await ledger.used(key) == 11 == charged(fake)

            clock[0] = utc(2026, 7, 2, 7, 0, 1)  # a new quota day in California
            await until(lambda: len(fake.calls("liveChat/messages")) >= 4, task)
            assert adapter.status.state == "connected"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [i.id for i in items][:2] == ["youtube:m0", "youtube:m1"]
    assert await ledger.used(key) == charged(fake) - 11  # the new day's count starts at 0
    clock[0] = utc(2026, 7, 2, 6, 30)
    assert await ledger.used(key) == 11  # yesterday's stays yesterday's


async def test_google_saying_quota_exceeded_spends_the_key_for_every_worker(bus: Bus) -> None:
    key = new_key()
    ledger = QuotaLedger(redis=bus.redis, recheck=0.05)
    quota_gone = error_body(403, "quotaExceeded", "You have exceeded your quota.", "youtube.quota")
    fake = FakeYouTube(api_key=key, pages=[[chat_item("m1")], (403, quota_gone), [chat_item("m2")]])
    async with fake.running():
        adapter = YouTubeAdapter(
            video_id=fake.video_id, api_url=fake.url, api_key=key, quota=ledger
        )
        task = asyncio.create_task(adapter.run(lambda item: None))
        try:
            await until(lambda: adapter.status.state == "backing off", task)
            calls = len(fake.requests)
            await asyncio.sleep(0.3)
            assert len(fake.requests) == calls  # waits for the reset instead of failing
            assert "spent; resets at 00:00 PT" in adapter.status.detail
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert await ledger.used(key) == 10_000
    assert not (await QuotaLedger(redis=bus.redis).charge(key, 1)).allowed  # any worker


async def test_a_worker_lends_its_redis_to_a_ledger_built_without_one(
    bus: Bus, session_id: str
) -> None:
    key = new_key()
    fake = FakeYouTube(api_key=key, pages=[[chat_item("m1")]], offline_after_pages=True)
    ledger = QuotaLedger()
    async with fake.running():
        adapter = YouTubeAdapter(
            video_id=fake.video_id, api_url=fake.url, api_key=key, quota=ledger
        )
        worker = Worker(adapter, bus, session_id, IngestSettings(batch_interval_ms=5))
        with pytest.raises(AdapterFatal, match="went offline"):
            await asyncio.wait_for(worker.run(), 20)
    assert ledger.redis is bus.redis
    assert await ledger.used(key) == charged(fake) == 1 + 2 * 5
