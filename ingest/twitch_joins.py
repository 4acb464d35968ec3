"""Twitch's JOIN limit, per account: one sliding window for every worker that logs in as it.

Twitch allows an account ``twitch_join_limit`` JOINs in any ``twitch_join_window_seconds``
(20 per 10 s for a normal account), however many connections and processes send them. The rule
is :class:`JoinPacer`, pure (times in, waits out). A fleet's workers keep the same rule in Redis
(:data:`JOIN_SCRIPT`, one sorted set per account under the fleet's hash tag, on Redis' clock so
the machines' clocks do not matter), taken in one atomic step by :class:`SharedJoins`.

:class:`JoinTurns` is what a pool asks: its own pacer first (no I/O), then the shared window.
While Redis is unreachable or slow (:data:`SHARED_TIMEOUT`) it falls back to its own pacer for a
window, logs it, and tries Redis again: each process then stays within the limit alone, so N
processes on one account may send up to N times the limit until Redis returns. Chat keeps
flowing on the connections already joined; pausing every JOIN instead would leave channels
that reconnect unread for the whole outage.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker import keys
from broker.scripts import Script
from ingest.base import check_cancelled
from ingest.runtime import PUBLISH_ERRORS

__all__ = [
    "JOIN_SCRIPT",
    "SHARED_TIMEOUT",
    "JoinPacer",
    "JoinTurns",
    "SharedJoins",
    "shared_joins",
]

log = logging.getLogger("vstudio.ingest.twitch_joins")

SHARED_TIMEOUT = 2.0
"""Seconds a JOIN waits for Redis' answer before it falls back to the local pacer (the client
has no command timeout, and a JOIN must not hang on a Redis that stopped answering)."""


@dataclass
class JoinPacer:
    """At most ``limit`` JOINs in any ``window`` seconds, without I/O.

    A sliding window rather than a refilling bucket: a bucket of 20 refilled at 2 per second
    lets 40 JOINs through in the first 10 s, over Twitch's limit. A JOIN sent at ``t`` counts
    until ``t + window`` (excluded): the same rule as :data:`JOIN_SCRIPT`.
    """

    limit: int
    window: float
    _sent: deque[float] = field(default_factory=deque, repr=False)

    def delay(self, now: float) -> float:
        """Seconds to wait before the next JOIN may go (0: now)."""
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()
        if len(self._sent) < self.limit:
            return 0.0
        return self._sent[0] + self.window - now

    def record(self, now: float) -> None:
        """A JOIN went out at ``now``."""
        self._sent.append(now)


JOIN_SCRIPT = """
-- KEYS[1] the account's JOINs (member per JOIN, score its time in ms); ARGV[1] limit,
-- ARGV[2] window ms, ARGV[3] this JOIN's member, ARGV[4] now in ms ('' : Redis' clock)
-- Returns 0 when the JOIN may go now (and counts it), else ms until the oldest leaves.
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


@dataclass
class SharedJoins:
    """One account's JOIN window in Redis, shared by every process of the fleet."""

    redis: Any
    key: str
    limit: int
    window: float
    _script: Any = field(default=None, repr=False)

    async def try_take(self, now_ms: int | None = None) -> float:
        """Count a JOIN now if the window has room: 0.0, else the seconds until it will.

        ``now_ms`` replaces Redis' clock (tests of the rule at fixed times).
        """
        if self._script is None:
            self._script = Script(self.redis, JOIN_SCRIPT)
        wait_ms = await self._script(
            keys=[self.key],
            args=[
                self.limit,
                int(self.window * 1000),
                secrets.token_hex(8),
                "" if now_ms is None else now_ms,
            ],
        )
        return int(wait_ms) / 1000


class JoinTurns:
    """When a pool's next JOIN may go: its own pacer, then the account's shared window."""

    def __init__(
        self,
        local: JoinPacer,
        shared: SharedJoins | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local = local
        self.shared = shared
        self.clock = clock
        self.fallbacks = 0
        """Times Redis failed a JOIN's turn and the local pacer alone decided."""
        self._alone_until: float | None = None
        """Until when the local pacer decides alone (Redis failed); ``None``: Redis decides."""

    async def take(self) -> float:
        """Take the next JOIN's turn now (0.0, and it counts), else the seconds to wait."""
        wait = self.local.delay(self.clock())
        if wait > 0:
            return wait
        alone = self._alone_until is not None and self.clock() < self._alone_until
        if self.shared is not None and not alone:
            try:
                wait = await asyncio.wait_for(self.shared.try_take(), SHARED_TIMEOUT)
            except PUBLISH_ERRORS as exc:
                self._fall_back(exc)
            else:
                if self._alone_until is not None:
                    log.info("twitch: JOINs are counted in Redis again (%s)", self.shared.key)
                    self._alone_until = None
            check_cancelled()  # a cancel swallowed by redis-py mid-call still stops the pool
            if wait > 0:
                return wait
        self.local.record(self.clock())
        return 0.0

    def _fall_back(self, error: BaseException) -> None:
        self.fallbacks += 1
        if self._alone_until is None:
            log.warning(
                "twitch: Redis did not count a JOIN (%s); pacing this process's JOINs alone "
                "at %d per %g s until it does",
                type(error).__name__,
                self.local.limit,
                self.local.window,
            )
        self._alone_until = self.clock() + self.local.window


def shared_joins(
    redis: Any, fleet: str, nick: str, token: str | None, limit: int, window: float
) -> SharedJoins | None:
    """The window in ``fleet`` of the account ``nick`` logs in as with ``token``; ``None`` for
    an anonymous login (``justinfan<digits>``, drawn afresh by each pool): no other process
    logs in as it, so there is nothing to share."""
    if not token:
        return None
    return SharedJoins(redis, keys.fleet_twitch_joins(fleet, nick.lower()), limit, window)
