"""YouTube Data API quota per API key, counted in Redis so every worker spends one budget.

Google charges each call against the daily quota of the project behind the API key (10,000 units
by default) and resets it at midnight Pacific time. Every adapter that polls with one key charges
the call's cost to one Redis counter per key and quota day *before* the call, atomically; when
the call would pass the limit it is not made, and the adapter waits for the reset instead of
spending the quota that the other chats of the fleet need (or getting ``quotaExceeded`` errors).

The arithmetic (costs, the Pacific day, when it resets, the words for people) is pure and tested
with fixed datetimes; :class:`QuotaLedger` is the one part that talks to Redis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from broker import keys
from broker.scripts import Script

__all__ = [
    "COSTS",
    "PACIFIC",
    "Charge",
    "QuotaLedger",
    "cost_of",
    "key_fingerprint",
    "key_hint",
    "quota_day",
    "resets_at",
    "spent_detail",
]

PACIFIC = ZoneInfo("America/Los_Angeles")
"""Google's quota day runs midnight to midnight Pacific time (PST or PDT as the date has it)."""

COSTS: dict[str, int] = {
    "liveChat/messages": 5,
    "videos": 1,
    "channels": 1,
    "search": 100,
}
"""Units per call of the resources the adapter uses (Google's "Quota Calculator" page:
``liveChatMessages.list`` 5, ``videos.list`` 1, ``channels.list`` 1, ``search.list`` 100)."""

DEFAULT_COST = 1
"""Google charges at least one unit for any request, invalid ones included."""

KEEP_DAYS = 2
"""A day's counter outlives its day by this much, then Redis drops it."""

CHARGE_SCRIPT = """
-- KEYS[1] the key's counter for the day; ARGV[1] units, ARGV[2] limit, ARGV[3] ttl seconds
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local units = tonumber(ARGV[1])
if used + units > tonumber(ARGV[2]) then
  return {0, used}
end
used = redis.call('INCRBY', KEYS[1], units)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, used}
"""

SPEND_SCRIPT = """
-- KEYS[1] the key's counter for the day; ARGV[1] limit, ARGV[2] ttl seconds
-- Google said the quota is gone: count it as spent for everyone until the reset.
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
end
return 1
"""


def cost_of(resource: str) -> int:
    """Units one call to ``resource`` (a path under the API base) costs."""
    return COSTS.get(resource, DEFAULT_COST)


def key_fingerprint(api_key: str) -> str:
    """What names a key in Redis: a hash, so the key itself is never stored or shown."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


def key_hint(api_key: str) -> str:
    """The end of the key, enough for a person to tell keys apart (``…abcd``)."""
    return f"…{api_key[-4:]}"


def quota_day(now: datetime) -> date:
    """The quota day that ``now`` (timezone-aware) falls in: its date in Pacific time."""
    return now.astimezone(PACIFIC).date()


def resets_at(now: datetime) -> datetime:
    """The next midnight Pacific time after ``now``, in UTC: when the day's quota starts again.

    Built from the next calendar date rather than by adding 24 hours, so the days of the
    switches to and from daylight saving time (23 and 25 hours long) end at midnight too. In UTC
    because Python subtracts two times of one zone by their wall clocks, an hour off on those
    days.
    """
    tomorrow = quota_day(now) + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=PACIFIC).astimezone(UTC)


def spent_detail(api_key: str, now: datetime) -> str:
    """The status detail of an adapter waiting for its key's quota."""
    reset = resets_at(now)
    wait = reset - now
    hours, rest = divmod(int(wait.total_seconds()), 3600)
    return (
        f"quota for key {key_hint(api_key)} spent; resets at {reset.astimezone(PACIFIC):%H:%M} PT "
        f"(in {hours} h {rest // 60:02d} min)"
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Charge:
    """What a charge found: whether the call may go ahead, and the units used that day."""

    allowed: bool
    used: int
    limit: int
    reset: datetime


@dataclass
class QuotaLedger:
    """Every API key's daily units in Redis, shared by all workers and processes.

    ``redis`` may be left ``None`` when the adapter is built before Redis is up (the ``vstudio
    ingest`` commands); the adapter then uses the Redis of the worker that runs it.
    ``clock`` is there for tests.
    """

    per_day: int = 10_000
    redis: Any = None
    recheck: float = 60.0
    """Seconds between looks at a spent quota (the reset, or a limit raised meanwhile)."""
    clock: Callable[[], datetime] = field(default=utc_now)
    _scripts: tuple[Any, Any] | None = field(default=None, repr=False)

    def _ready(self) -> tuple[Any, Any]:
        if self.redis is None:
            raise RuntimeError("the quota ledger has no Redis client")
        if self._scripts is None:
            self._scripts = (
                Script(self.redis, CHARGE_SCRIPT),
                Script(self.redis, SPEND_SCRIPT),
            )
        return self._scripts

    def counter(self, api_key: str, now: datetime) -> str:
        return keys.youtube_quota(key_fingerprint(api_key), quota_day(now).isoformat())

    def _ttl(self, now: datetime) -> int:
        return int((resets_at(now) - now).total_seconds()) + KEEP_DAYS * 86_400

    async def charge(self, api_key: str, units: int) -> Charge:
        """Count ``units`` against the key's day unless that would pass ``per_day``."""
        charge_script, _ = self._ready()
        now = self.clock()
        allowed, used = await charge_script(
            keys=[self.counter(api_key, now)], args=[units, self.per_day, self._ttl(now)]
        )
        return Charge(bool(allowed), int(used), self.per_day, resets_at(now))

    async def spend(self, api_key: str) -> None:
        """Mark the key's day as spent (Google answered ``quotaExceeded``: another program
        uses the same project, or the limit setting is higher than the real one)."""
        _, spend_script = self._ready()
        now = self.clock()
        await spend_script(keys=[self.counter(api_key, now)], args=[self.per_day, self._ttl(now)])

    async def used(self, api_key: str) -> int:
        """Units counted for the key today."""
        self._ready()
        raw = await self.redis.get(self.counter(api_key, self.clock()))
        return int(raw or 0)
