"""One token bucket in Redis for the TikTok sign server, shared by every worker.

TikTokLive asks a sign server (Euler Stream by default) for each connection's WebSocket URL,
and the sign server limits requests per API key (HTTP 429 past it). However many workers and
processes connect rooms with one key, each connection takes a token from one bucket first:
``per_minute`` tokens flow in, at most ``burst`` wait at once. An empty bucket answers how long
until the next token, and the adapter waits (``rate limited``) instead of calling.

The bucket is one Redis hash (``tokens``, ``at``) updated by one Lua script on Redis' own clock
(``TIME``), so the workers' clocks do not matter. :func:`refill` is the same arithmetic in
Python, for the tests and for reading.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from broker import keys
from broker.scripts import Script
from ingest.base import check_cancelled

__all__ = ["SignBucket", "bucket_name", "refill"]

TAKE_SCRIPT = """
-- KEYS[1] the bucket hash {tokens, at}; ARGV[1] tokens per ms, ARGV[2] burst,
-- ARGV[3] 'take' or 'drain', ARGV[4] drain: ms the sign server asked to wait
-- Returns {1, 0} when a token was taken, else {0, ms until the next token}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or ARGV[2])
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
local ttl = math.ceil(burst / rate) + 60000
if ARGV[3] == 'drain' then
  -- the sign server said 429: nobody takes a token before it said to try again
  tokens = math.min(tokens, 1 - tonumber(ARGV[4]) * rate)
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', string.format('%d', at))
  redis.call('PEXPIRE', KEYS[1], ttl + tonumber(ARGV[4]))
  return {0, tonumber(ARGV[4])}
end
local answer
if tokens >= 1 then
  tokens = tokens - 1
  answer = {1, 0}
else
  answer = {0, math.ceil((1 - tokens) / rate)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', string.format('%d', at))
redis.call('PEXPIRE', KEYS[1], ttl)
return answer
"""


def refill(tokens: float, elapsed_ms: float, per_minute: float, burst: int) -> float:
    """Tokens in the bucket ``elapsed_ms`` after it held ``tokens`` (the script's arithmetic)."""
    return min(float(burst), tokens + elapsed_ms * per_minute / 60_000)


def bucket_name(sign_api_key: str | None) -> str:
    """The bucket of one sign server API key (by a hash, never the key); one for no key."""
    fingerprint = hashlib.sha256((sign_api_key or "").encode()).hexdigest()[:24]
    return keys.sign_bucket(fingerprint if sign_api_key else "anonymous")


Sleep = Callable[[float], Awaitable[Any]]


@dataclass
class SignBucket:
    """Takes a sign server token for a connection, waiting while the bucket is empty.

    ``redis`` may be left ``None`` when the adapter is built before Redis is up; the adapter
    then uses the Redis of the worker that runs it.
    """

    per_minute: float = 10.0
    burst: int = 3
    redis: Any = None
    _script: Any = field(default=None, repr=False)

    def _ready(self) -> Any:
        if self.redis is None:
            raise RuntimeError("the sign bucket has no Redis client")
        if self._script is None:
            self._script = Script(self.redis, TAKE_SCRIPT)
        return self._script

    async def try_take(self, sign_api_key: str | None) -> float:
        """Take a token if there is one: 0.0, else the seconds until there will be."""
        script = self._ready()
        taken, wait_ms = await script(
            keys=[bucket_name(sign_api_key)],
            args=[repr(self.per_minute / 60_000), self.burst, "take", 0],
        )
        return 0.0 if taken else max(float(wait_ms), 1.0) / 1000

    async def take(
        self,
        sign_api_key: str | None,
        waiting: Callable[[float], None] = lambda seconds: None,
        sleep: Sleep = asyncio.sleep,
    ) -> float:
        """Take a token, waiting as long as it takes; the seconds waited in all.

        ``waiting(seconds)`` is told each wait before it starts (the adapter's status).
        """
        waited = 0.0
        while (wait := await self.try_take(sign_api_key)) > 0:
            check_cancelled()
            waiting(wait)
            await sleep(wait)
            waited += wait
        return waited

    async def drain(self, sign_api_key: str | None, seconds: float) -> None:
        """Empty the bucket for ``seconds`` (the sign server answered 429 with that wait)."""
        script = self._ready()
        await script(
            keys=[bucket_name(sign_api_key)],
            args=[repr(self.per_minute / 60_000), self.burst, "drain", int(seconds * 1000)],
        )
