"""Sliding-window rate limits: a pure per-connection limiter, and the same rule kept in Redis.

A WebSocket connection's limits live with the connection (:class:`SlidingWindow`), a pure
class driven by the caller's clock and tested without sockets. REST calls have no connection,
so their windows live in Redis per user and session (:class:`RedisWindow`), shared by every
process. Both answer the same question: may this happen now, and if not, in how many seconds.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.models import ErrorCode, MessageType, ProtocolError
from config import ServerSettings
from server.turns import TurnScript

__all__ = [
    "OUTAGES",
    "Limit",
    "RedisWindow",
    "SlidingWindow",
    "account_limits",
    "account_part",
    "limits_for",
    "outage",
]

OUTAGES: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
"""What redis-py raises while Redis is unreachable or restarting (refused, reset, timed out,
loading its AOF): the request did not happen and may be sent again. Only Redis's own errors: a
file or socket error elsewhere in a handler is no Redis outage."""


def outage(settings: ServerSettings, what: str) -> ProtocolError:
    """4009 for a request that met a Redis outage: retryable after ``outage_retry_after``."""
    return ProtocolError(
        ErrorCode.UNAVAILABLE,
        f"{what} could not be done: the server's Redis is unreachable for a moment; "
        f"nothing was recorded, try again in {settings.outage_retry_after:g} s",
        settings.outage_retry_after,
    )


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` events per ``window`` seconds in the bucket ``name``."""

    name: str
    count: int
    window: float


def limits_for(settings: ServerSettings, kind: MessageType | None) -> tuple[Limit, ...]:
    """The limits one client message counts against: its own (chat, reaction) and 'any'
    (``None`` for a frame whose type could not be read: 'any' alone), 'any' first.

    Asked once per frame, so the answer is kept per kind and settings' values."""
    key = (
        kind,
        settings.message_rate_limit,
        settings.message_rate_window,
        settings.chat_rate_limit,
        settings.chat_rate_window,
        settings.reaction_rate_limit,
        settings.reaction_rate_window,
    )
    found = _limits.get(key)
    if found is None:
        rules = [Limit("any", settings.message_rate_limit, settings.message_rate_window)]
        if kind == MessageType.CHAT_MESSAGE:
            rules.append(Limit("chat", settings.chat_rate_limit, settings.chat_rate_window))
        elif kind == MessageType.REACTION_SEND:
            rules.append(
                Limit("reaction", settings.reaction_rate_limit, settings.reaction_rate_window)
            )
        if len(_limits) > 1000:  # only settings changed at run time (tests) add keys
            _limits.clear()
        found = _limits[key] = tuple(rules)
    return found


_limits: dict[tuple[object, ...], tuple[Limit, ...]] = {}


def account_limits(settings: ServerSettings, kind: MessageType) -> tuple[Limit, ...]:
    """The limits that hold for a user across all their connections: chat and reactions (the
    'any' limit stays per connection, so one busy socket does not silence the user's others)."""
    return account_part(limits_for(settings, kind))


def account_part(rules: tuple[Limit, ...]) -> tuple[Limit, ...]:
    """:func:`account_limits` of a frame's :func:`limits_for` answer, for a caller that has it
    already (the WebSocket handler, once per frame)."""
    return rules[1:]  # all but 'any', which comes first


class SlidingWindow:
    """Remembers the times of accepted events per bucket; refuses the one over a limit.

    An event is checked against every limit first and recorded only if all accept it, so a
    refused message does not use up the budget.
    """

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: dict[str, deque[float]] | None = None
        """Made at the first event: most connections (viewers) never send one."""

    def retry_after(self, limits: tuple[Limit, ...], now: float) -> float | None:
        """Seconds until an event would be accepted, or ``None`` after recording it now."""
        if self._times is None:
            self._times = {}
        wait = 0.0
        for limit in limits:
            times = self._times.get(limit.name)
            if times is None:
                times = self._times[limit.name] = deque()
            while times and times[0] <= now - limit.window:
                times.popleft()
            if len(times) >= limit.count:
                wait = max(wait, times[0] + limit.window - now)
        if wait > 0:
            return wait
        for limit in limits:
            self._times[limit.name].append(now)
        return None


WINDOW_SCRIPT = """
-- KEYS[i] one sorted set per limit; ARGV[1] now (ms), ARGV[2] member, ARGV[3] mode: 'take'
-- (check, and record if every limit lets it through), 'check' (record nothing) or 'record'
-- (record, check nothing); ARGV[2 + 2i] count of limit i, ARGV[3 + 2i] window of limit i (ms)
local now, mode = tonumber(ARGV[1]), ARGV[3]
local wait = 0
if mode ~= 'record' then
  for i = 1, #KEYS do
    local count = tonumber(ARGV[2 + 2 * i])
    local window = tonumber(ARGV[3 + 2 * i])
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
    if redis.call('ZCARD', KEYS[i]) >= count then
      local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
      local left = tonumber(oldest[2]) + window - now
      if left > wait then wait = left end
    end
  end
end
if wait > 0 then return tostring(wait) end
if mode ~= 'check' then
  for i = 1, #KEYS do
    redis.call('ZADD', KEYS[i], now, ARGV[2])
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3 + 2 * i]))
  end
end
return false
"""

WindowMode = Literal["take", "check", "record"]


class RedisWindow:
    """The sliding window in Redis, shared by every process: one sorted set per bucket.

    :meth:`retry_after` checks and records in one step (a request that is let through counts);
    :meth:`wait` and :meth:`record` are the two halves apart, for events counted only when they
    turn out to be failures, such as wrong passwords. One script does all three; the checks
    of one loop turn (a reconnect storm's ticket requests) go to Redis in one round trip, each
    still its own script run, so every request counts.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._script = TurnScript(client, WINDOW_SCRIPT)

    async def _run(self, buckets: dict[str, Limit], now: float, mode: WindowMode) -> float | None:
        ms = int(now * 1000)
        args: list[str | int] = [ms, f"{ms}-{secrets.token_hex(4)}", mode]
        for limit in buckets.values():
            args += [limit.count, int(limit.window * 1000)]
        result = await self._script(keys=list(buckets), args=args)
        return None if result is None else float(result) / 1000

    async def wait(self, buckets: dict[str, Limit], now: float) -> float | None:
        """Seconds until every bucket (Redis key -> its limit) is under its limit, or ``None``."""
        return await self._run(buckets, now, "check")

    async def record(self, buckets: dict[str, Limit], now: float) -> None:
        """Count one event now in every bucket."""
        await self._run(buckets, now, "record")

    async def retry_after(self, prefix: str, limits: tuple[Limit, ...], now: float) -> float | None:
        """Like :meth:`SlidingWindow.retry_after`, for the buckets named ``<prefix>:<limit>``."""
        return await self._run({f"{prefix}:{limit.name}": limit for limit in limits}, now, "take")
