"""Who is connected to a session, across every server process, surviving a process's death.

Each process records ``<process>|<user>`` in the session's sorted set, scored by an expiry it
keeps pushing forward while the user is connected there; a hash counts, per user, the
processes holding them, so the viewer count (distinct users) is one ``HLEN``. Entries of a
process that died stop being refreshed and are reaped by the next join, leave or count. A join
that would pass the session's maximum is refused in the same script (4008), so the limit holds
with any number of processes. Within a process a user's connections are counted in memory and
only the first and last touch Redis.
"""

from __future__ import annotations

import time
from collections import Counter

import redis.asyncio as aioredis

from broker import keys

__all__ = ["Presence", "SessionFull"]

ENTRY_TTL = 30.0
"""Seconds an entry outlives the last refresh of its process."""

REFRESH_EVERY = ENTRY_TTL / 3

REAP = """
local function reap(conns, users, now)
  local dead = redis.call('ZRANGEBYSCORE', conns, '-inf', now, 'LIMIT', 0, 1000)
  for _, member in ipairs(dead) do
    redis.call('ZREM', conns, member)
    local user = string.sub(member, string.find(member, '|', 1, true) + 1)
    if redis.call('HINCRBY', users, user, -1) <= 0 then redis.call('HDEL', users, user) end
  end
end
"""

JOIN = (
    REAP
    + """
-- KEYS[1] entries, KEYS[2] users; ARGV[1] process, ARGV[2] user, ARGV[3] expiry, ARGV[4] now,
-- ARGV[5] maximum distinct users
reap(KEYS[1], KEYS[2], ARGV[4])
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0
   and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[5]) then
  return -1
end
if redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1] .. '|' .. ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
end
return redis.call('HLEN', KEYS[2])
"""
)

LEAVE = (
    REAP
    + """
-- KEYS[1] entries, KEYS[2] users; ARGV[1] process, ARGV[2] user, ARGV[3] now
if redis.call('ZREM', KEYS[1], ARGV[1] .. '|' .. ARGV[2]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
end
reap(KEYS[1], KEYS[2], ARGV[3])
return redis.call('HLEN', KEYS[2])
"""
)

REFRESH = (
    REAP
    + """
-- KEYS[1] entries, KEYS[2] users; ARGV[1] process, ARGV[2] expiry, ARGV[3] now, ARGV[4..] users
for i = 4, #ARGV do
  if redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1] .. '|' .. ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i], 1)
  end
end
reap(KEYS[1], KEYS[2], ARGV[3])
return redis.call('HLEN', KEYS[2])
"""
)

COUNT = (
    REAP
    + """
reap(KEYS[1], KEYS[2], ARGV[1])
return redis.call('HLEN', KEYS[2])
"""
)


class SessionFull(Exception):
    """The session has its maximum of distinct viewers (4008)."""


def _keys(session_id: str) -> list[str]:
    prefix = keys.session_prefix(session_id)
    return [f"{prefix}:presence", f"{prefix}:viewers"]


class Presence:
    """This process's part of every session's viewer list."""

    def __init__(self, client: aioredis.Redis, process_id: str, max_viewers: int) -> None:
        self.redis = client
        self.process_id = process_id
        self.max_viewers = max_viewers
        self.local: dict[str, Counter[str]] = {}
        self._join = client.register_script(JOIN)
        self._leave = client.register_script(LEAVE)
        self._refresh = client.register_script(REFRESH)
        self._count = client.register_script(COUNT)

    @staticmethod
    def _now() -> int:
        return int(time.time() * 1000)

    async def join(self, session_id: str, user_id: str) -> tuple[bool, int]:
        """Count a connection of ``user_id``: (first connection of this user here?, count).

        Raises :class:`SessionFull` when the user is new and the session is at its maximum.
        """
        users = self.local.setdefault(session_id, Counter())
        if users[user_id] > 0:
            users[user_id] += 1
            return False, await self.count(session_id)
        now = self._now()
        users[user_id] += 1
        try:
            result = await self._join(
                keys=_keys(session_id),
                args=[
                    self.process_id,
                    user_id,
                    now + int(ENTRY_TTL * 1000),
                    now,
                    self.max_viewers,
                ],
            )
        except BaseException:
            self._forget(session_id, user_id)
            raise
        if int(result) < 0:
            self._forget(session_id, user_id)
            raise SessionFull(f"session {session_id} has its maximum of {self.max_viewers} viewers")
        return True, int(result)

    async def leave(self, session_id: str, user_id: str) -> tuple[bool, int]:
        """Uncount a connection: (was it the user's last one here?, count)."""
        if self._forget(session_id, user_id) > 0:
            return False, await self.count(session_id)
        result = await self._leave(
            keys=_keys(session_id), args=[self.process_id, user_id, self._now()]
        )
        return True, int(result)

    async def count(self, session_id: str) -> int:
        """Distinct users connected to the session on any process."""
        return int(await self._count(keys=_keys(session_id), args=[self._now()]))

    async def refresh(self) -> None:
        """Push this process's entries' expiry forward (call every :data:`REFRESH_EVERY`)."""
        now = self._now()
        for session_id, users in list(self.local.items()):
            present = [user for user, n in users.items() if n > 0]
            for start in range(0, len(present), 1000):
                await self._refresh(
                    keys=_keys(session_id),
                    args=[
                        self.process_id,
                        now + int(ENTRY_TTL * 1000),
                        now,
                        *present[start : start + 1000],
                    ],
                )

    async def clear(self) -> None:
        """Remove every entry of this process (clean shutdown)."""
        for session_id, users in list(self.local.items()):
            for user_id in list(users):
                await self._leave(
                    keys=_keys(session_id), args=[self.process_id, user_id, self._now()]
                )
        self.local.clear()

    def _forget(self, session_id: str, user_id: str) -> int:
        users = self.local.get(session_id)
        if users is None:
            return 0
        users[user_id] -= 1
        left = users[user_id]
        if left <= 0:
            del users[user_id]
            if not users:
                del self.local[session_id]
        return max(left, 0)
