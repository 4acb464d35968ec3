"""Who is connected to a session, across every server process, surviving a process's death.

Each process records ``<process>|<user>`` in the session's sorted set, scored by an expiry it
keeps pushing forward while the user is connected there; a hash counts, per user, the
processes holding them, so the viewer count (distinct users) is one ``HLEN``. Entries of a
process that died stop being refreshed and are reaped by the next join, leave or count. A join
that would pass the session's maximum is refused in the same script (4008), so the limit holds
with any number of processes. Within a process a user's connections are counted in memory and
only the first and last touch Redis.

:class:`ConnectionQuota` caps the open connections of one user and from one address, whatever
the session, on the same pattern: one sorted set per user and per address whose members
(``<process>|<connection>``) expire unless their process refreshes them, so a connection whose
process died is forgotten within :data:`ENTRY_TTL`, and one whose socket died is given back by
the transport's ``finally`` at once.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from itertools import groupby
from operator import itemgetter

import redis.asyncio as aioredis

from broker import keys
from broker.connection import is_cluster
from broker.models import ErrorCode, ProtocolError
from broker.scripts import Script
from server.turns import TurnScript

__all__ = [
    "ConnectionLimit",
    "ConnectionQuota",
    "Presence",
    "QuotaHold",
    "SessionFull",
    "place_batches",
]

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
-- KEYS[1] entries, KEYS[2] users; ARGV[1] process, ARGV[2] expiry, ARGV[3] now,
-- ARGV[4] maximum distinct users, ARGV[5..] users joining: 2 each new to the session, 1 each
-- already in it (on another process), -1 when full; then HLEN
reap(KEYS[1], KEYS[2], ARGV[3])
local limit = tonumber(ARGV[4])
local results = {}
for i = 5, #ARGV do
  local user = ARGV[i]
  local known = redis.call('HEXISTS', KEYS[2], user) == 1
  if not known and redis.call('HLEN', KEYS[2]) >= limit then
    results[#results + 1] = -1
  else
    if redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1] .. '|' .. user) == 1 then
      redis.call('HINCRBY', KEYS[2], user, 1)
    end
    results[#results + 1] = known and 1 or 2
  end
end
results[#results + 1] = redis.call('HLEN', KEYS[2])
return results
"""
)

LEAVE = (
    REAP
    + """
-- KEYS[1] entries, KEYS[2] users; ARGV[1] process, ARGV[2] now, ARGV[3..] users leaving:
-- 1 each now gone from the session, 0 each still in it (on another process); then HLEN
for i = 3, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[1] .. '|' .. ARGV[i]) == 1 then
    if redis.call('HINCRBY', KEYS[2], ARGV[i], -1) <= 0 then
      redis.call('HDEL', KEYS[2], ARGV[i])
    end
  end
end
reap(KEYS[1], KEYS[2], ARGV[2])
local results = {}
for i = 3, #ARGV do
  results[#results + 1] = 1 - redis.call('HEXISTS', KEYS[2], ARGV[i])
end
results[#results + 1] = redis.call('HLEN', KEYS[2])
return results
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

BATCH = 500
"""Most users one script call takes; a connect storm becomes a few calls, not thousands."""


class SessionFull(Exception):
    """The session has its maximum of distinct viewers (4008)."""


Counted = tuple[int, bool]
"""A join's or leave's answer from Redis: the viewer count (-1: the session is full), and
whether the session's users changed (a user new to it, or gone from it)."""


class Presence:
    """This process's part of every session's viewer list.

    Joins and leaves that arrive in the same loop iteration are sent to Redis together, one
    script call per session and run of joins or leaves (and per :data:`BATCH` users), so a
    burst of connects after a restart costs a handful of round trips. They reach Redis in the
    order they happened: a reconnect's leave and join in one iteration must not swap.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        process_id: str,
        max_viewers: int,
        *,
        entry_ttl: float = ENTRY_TTL,
    ) -> None:
        self.redis = client
        self.entry_ttl_ms = int(entry_ttl * 1000)
        self.process_id = process_id
        self.max_viewers = max_viewers
        self.local: dict[str, Counter[str]] = {}
        self._join = Script(client, JOIN)
        self._leave = Script(client, LEAVE)
        self._refresh = Script(client, REFRESH)
        self._count = Script(client, COUNT)
        self._queued: dict[str, list[tuple[bool, str, asyncio.Future[Counted]]]] = {}
        """Per session, in order: (joining?, user, its result) not yet sent to Redis."""
        self._flush: asyncio.Task[None] | None = None
        self._first_join: dict[tuple[str, str], asyncio.Future[Counted]] = {}
        """A user's join still on its way to Redis; their next connections wait for it."""

    @staticmethod
    def _now() -> int:
        return int(time.time() * 1000)

    async def join(self, session_id: str, user_id: str) -> tuple[bool, int]:
        """Count a connection of ``user_id``: (did the user join the session?, count).

        ``True`` only for a user the session did not have on any process: a second tab, the
        same user on another process, or a user coming back while the entry of the process
        they left (one that crashed) still counts them is no news. After a crash that is
        every client of the storm, so none of them makes a ``session.join`` event.
        Raises :class:`SessionFull` when the user is new and the session is at its maximum.
        """
        users = self.local.setdefault(session_id, Counter())
        users[user_id] += 1
        first = users[user_id] == 1
        pending = self._first_join.get((session_id, user_id))
        if not first and pending is None:
            return False, await self.count(session_id)
        if first:
            pending = self._queue(True, session_id, user_id)
            self._first_join[(session_id, user_id)] = pending
        assert pending is not None
        try:
            # one waiter's cancel must not cancel others
            count, new = await asyncio.shield(pending)
        except BaseException:
            self._forget(session_id, user_id)
            raise
        finally:
            if first:
                self._first_join.pop((session_id, user_id), None)
        if count < 0:  # refused: this connection, and any that waited on the same join
            self._forget(session_id, user_id)
            raise SessionFull(f"session {session_id} has its maximum of {self.max_viewers} viewers")
        return first and new, count

    async def leave(self, session_id: str, user_id: str) -> tuple[bool, int]:
        """Uncount a connection: (did the user leave the session, on every process?, count)."""
        if self._forget(session_id, user_id) > 0:
            return False, await self.count(session_id)
        count, gone = await self._queue(False, session_id, user_id)
        return gone, count

    async def count(self, session_id: str) -> int:
        """Distinct users connected to the session on any process."""
        return int(await self._count(keys=keys.presence(session_id), args=[self._now()]))

    def _queue(self, joining: bool, session_id: str, user: str) -> asyncio.Future[Counted]:
        done: asyncio.Future[Counted] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(session_id, []).append((joining, user, done))
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._send())
        return done

    async def _send(self) -> None:
        await asyncio.sleep(0)  # let this loop iteration's joins and leaves gather
        while self._queued:
            queued, self._queued = self._queued, {}
            for session_id, operations in queued.items():
                for joining, run in groupby(operations, key=itemgetter(0)):
                    waiting = [(user, done) for _, user, done in run]
                    call = self._join_batch if joining else self._leave_batch
                    await self._run(waiting, session_id, call)

    async def _run(
        self,
        waiting: list[tuple[str, asyncio.Future[Counted]]],
        session_id: str,
        call: Callable[[str, list[str]], Awaitable[list[Counted]]],
    ) -> None:
        for start in range(0, len(waiting), BATCH):
            part = waiting[start : start + BATCH]
            try:
                results = await call(session_id, [user for user, _ in part])
            except Exception as exc:
                for _, done in part:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(part, results, strict=True):
                if not done.done():
                    done.set_result(result)

    async def _join_batch(self, session_id: str, users: list[str]) -> list[Counted]:
        now = self._now()
        raw = await self._join(
            keys=keys.presence(session_id),
            args=[self.process_id, now + self.entry_ttl_ms, now, self.max_viewers, *users],
        )
        count = int(raw[-1])
        return [(count, int(flag) == 2) if int(flag) > 0 else (-1, False) for flag in raw[:-1]]

    async def _leave_batch(self, session_id: str, users: list[str]) -> list[Counted]:
        raw = await self._leave(
            keys=keys.presence(session_id), args=[self.process_id, self._now(), *users]
        )
        count = int(raw[-1])
        return [(count, int(gone) == 1) for gone in raw[:-1]]

    async def refresh(self) -> None:
        """Push this process's entries' expiry forward (call every :data:`REFRESH_EVERY`)."""
        now = self._now()
        for session_id, users in list(self.local.items()):
            present = [user for user, n in users.items() if n > 0]
            for start in range(0, len(present), BATCH):
                await self._refresh(
                    keys=keys.presence(session_id),
                    args=[
                        self.process_id,
                        now + self.entry_ttl_ms,
                        now,
                        *present[start : start + BATCH],
                    ],
                )

    async def clear(self) -> None:
        """Remove every entry of this process (clean shutdown), a batch per call."""
        for session_id, users in list(self.local.items()):
            await self._run(
                [(user, asyncio.get_running_loop().create_future()) for user in users],
                session_id,
                self._leave_batch,
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


ADMIT = """
-- KEYS[1] a user's or an address's connections; ARGV[1] member, ARGV[2] expiry, ARGV[3] now,
-- ARGV[4] limit, ARGV[5] key TTL (ms): 1 when admitted, 0 when the limit is reached
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class ConnectionLimit(ProtocolError):
    """Too many open connections for one user or address: 4008 with the reason (HTTP 429)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.SESSION_FULL, message)


QuotaHold = tuple[str, ...]
"""The keys one admitted connection holds a place in, and its member name last."""

REFRESH_SIZE = 250
"""Most places one refresh round trip carries. A refresh of 10,000 places in one pipeline took
about 0.35 s of the process's CPU every :data:`REFRESH_EVERY` at once (fan-out p99 at 10,000
viewers 450 ms instead of 180); in parts spread over the interval, the walker keeps its pace."""

REFRESH_PLACES = """
-- KEYS the batch's keys; ARGV[1] key TTL (ms), ARGV[2] expiry, then per key: n, its n members
local ttl, expiry, at = ARGV[1], ARGV[2], 3
for i = 1, #KEYS do
  local n = tonumber(ARGV[at])
  for j = at + 1, at + n do redis.call('ZADD', KEYS[i], 'XX', expiry, ARGV[j]) end
  at = at + n + 1
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return #KEYS
"""
"""A refresh part as one script run on a single Redis: a third of the client CPU of a pipeline
of ``ZADD``/``PEXPIRE`` (bench/limits.py); a cluster, whose keys lie in other slots, gets the
pipeline."""

RefreshBatch = list[tuple[str, dict[str, int]]]
"""One round trip of a refresh: ``ZADD XX`` of these members, by key."""


def place_batches(
    held: Mapping[str, Sequence[str]], expiry: int, size: int
) -> Iterator[RefreshBatch]:
    """This process's places (member -> keys) by key, scored ``expiry``, as round trips of at
    most ``size`` places each (refresh and clear), each made when it is to be sent.

    Made all at once, a refresh's batches held ~240 bytes per connection for the whole spread
    (half of the time). A place given back meanwhile is left out; a key with many members (an
    address's) is in as many round trips as its members need.
    """
    batch: dict[str, dict[str, int]] = {}
    count = 0
    for member in list(held):  # the names only: places come and go while the batches go out
        taken = held.get(member)
        if not taken:
            continue
        if batch and count + len(taken) > size:
            yield list(batch.items())
            batch, count = {}, 0
        for key in taken:
            batch.setdefault(key, {})[member] = expiry
        count += len(taken)
    if batch:
        yield list(batch.items())


class ConnectionQuota:
    """Places for open connections per user and per address, shared by every process.

    :meth:`admit` takes a place in both (a refusal gives back the other); the admits of one
    loop turn, a connect storm's, go to Redis together, one round trip, each its own script run.
    :meth:`release` gives them back, :meth:`refresh` keeps this process's places alive.
    A limit of 0 turns that cap off and costs nothing.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        process_id: str,
        per_user: int,
        per_address: int,
        *,
        entry_ttl: float = ENTRY_TTL,
        refresh_size: int = REFRESH_SIZE,
    ) -> None:
        self.redis = client
        self.process_id = process_id
        self.refresh_size = refresh_size
        self._refresh_places = None if is_cluster(client) else Script(client, REFRESH_PLACES)
        self.per_user = per_user
        self.per_address = per_address
        self.entry_ttl_ms = int(entry_ttl * 1000)
        self._admit = TurnScript(client, ADMIT)
        self._serial = itertools.count(1)
        self.held: dict[str, tuple[str, ...]] = {}
        """This process's places: member -> the keys it holds a place in."""

    async def admit(self, user_id: str, address: str | None) -> QuotaHold:
        """A place for one more connection, or :class:`ConnectionLimit` saying which cap."""
        caps = []
        if self.per_user:
            caps.append((keys.user_connections(user_id), self.per_user, "this account"))
        if self.per_address and address:
            caps.append((keys.address_connections(address), self.per_address, "this address"))
        member = f"{self.process_id}|{next(self._serial)}"
        if not caps:
            return (member,)
        now = int(time.time() * 1000)
        # both caps in this turn's batch at once, awaited in turn: no task per cap
        asked = [
            self._admit.submit(
                [key], [member, now + self.entry_ttl_ms, now, limit, self.entry_ttl_ms]
            )
            for key, limit, _ in caps
        ]
        try:
            replies = [await answer for answer in asked]
        finally:  # a failed batch fails every future: the errors not raised are seen here
            for answer in asked:
                if answer.done() and not answer.cancelled():
                    answer.exception()
        admitted = [TurnScript.reply(reply) for reply in replies]
        # a tuple, not a list: ``held`` keeps it for as long as the connection lives
        taken = tuple(key for (key, _, _), ok in zip(caps, admitted, strict=True) if int(ok))
        if len(taken) < len(caps):
            if taken:
                await self._give_back(taken, member)
            _, limit, whom = next(
                cap for cap, ok in zip(caps, admitted, strict=True) if not int(ok)
            )
            raise ConnectionLimit(
                f"too many open connections from {whom} (the limit is {limit}); "
                "close another tab or connection and try again"
            )
        self.held[member] = taken
        return (*taken, member)

    async def release(self, hold: QuotaHold) -> None:
        """Give back the places of a connection that ended (forgotten here first, so a Redis
        error only leaves them to expire)."""
        *taken, member = hold
        self.held.pop(member, None)
        if taken:
            await self._give_back(taken, member)

    async def _give_back(self, taken: Sequence[str], member: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in taken:
                pipe.zrem(key, member)
            await pipe.execute()

    async def refresh(self, spread: float = 0.0) -> None:
        """Push the expiry of this process's places forward, a bounded part per round trip,
        the parts ``spread`` seconds apart in all: 10,000 places cost about 0.35 s of this
        process's CPU, which taken at once delays every fan-out frame of that moment."""
        expiry = int(time.time() * 1000) + self.entry_ttl_ms + int(spread * 1000)
        places = sum(len(taken) for taken in self.held.values())
        parts = -(-places // self.refresh_size)
        for n, batch in enumerate(place_batches(self.held, expiry, self.refresh_size)):
            if n and spread:
                await asyncio.sleep(spread / parts)
            await self._refresh_batch(batch, expiry)

    async def _refresh_batch(self, batch: RefreshBatch, expiry: int) -> None:
        if self._refresh_places is not None:
            args: list[str | int] = [self.entry_ttl_ms, expiry]
            for _, scored in batch:
                args.append(len(scored))
                args.extend(scored)
            await self._refresh_places(keys=[key for key, _ in batch], args=args)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, scored in batch:
                pipe.zadd(key, scored, xx=True)
                pipe.pexpire(key, self.entry_ttl_ms)
            await pipe.execute()

    async def clear(self) -> None:
        """Give back every place of this process (clean shutdown), a bounded part per trip."""
        held, self.held = self.held, {}
        for batch in place_batches(held, 0, self.refresh_size):
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, scored in batch:
                    pipe.zrem(key, *scored)
                await pipe.execute()
