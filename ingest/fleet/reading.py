"""One source read by one worker under a lease, published to every session that wants it.

A :class:`Reading` is the ingest runtime's :class:`~ingest.runtime.Worker` (the same
reconnection, batching and dedupe ids) with three differences for the fleet:

- **Every session.** A batch is published to each session in :attr:`Reading.sessions` (the
  reconcile loop keeps it current); the dedupe is per session, so redundant readers and a
  retried batch deliver each message once to each session.
- **Fenced.** Before each batch, one pipelined round trip checks that the lease still holds this
  worker's token and which sessions are still not ended; without the lease nothing is published
  (the batch waits for the lease to come back or the reading to be fenced), and an ended
  session gets nothing more.
- **Bounded while Redis is away.** Publishing never gives up: the adapter keeps reading into
  the buffer, up to ``fleet_buffer_limit`` items; newer items over the bound are dropped and
  counted (:attr:`Reading.overflow`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from itertools import islice

import orjson

from broker import keys
from broker.bus import Bus
from broker.models import NormalizedChatMessage, now_ms
from config import IngestSettings
from ingest.base import Adapter, IngestItem
from ingest.batching import grouped_by_kind
from ingest.fleet.lease import Lease
from ingest.runtime import PUBLISH_ERRORS, PUBLISH_TIMEOUT, TICK_SECONDS, Worker

__all__ = ["Reading"]

log = logging.getLogger("vstudio.ingest.fleet")

RETRY_MAX = 1.0
"""Longest wait in seconds between tries of a held-back batch."""


class Reading(Worker):
    """Runs one adapter for a set of sessions while ``lease`` is held."""

    def __init__(
        self,
        adapter: Adapter,
        bus: Bus,
        sessions: Sequence[str],
        settings: IngestSettings,
        *,
        lease: Lease,
        worker_id: str,
        redis_slots: asyncio.Semaphore | None = None,
    ) -> None:
        super().__init__(adapter, bus, sessions[0], settings, worker_id=worker_id)
        self.sessions: tuple[str, ...] = tuple(sessions)
        self.lease = lease
        self.redis_slots = redis_slots or asyncio.Semaphore(1)
        """Shared by every reading of a worker: at most that many talk to Redis at once, so
        hundreds of readings never ask the client's pool for more connections than it has."""
        self.buffer_limit = settings.fleet_buffer_limit
        self.overflow = 0
        """Items dropped because the buffer was full (Redis away too long)."""
        self.dropped = 0
        """Items given up: read under a lease that another worker holds now, or for sessions
        that ended before they were published."""
        self.fenced = False
        self.held_back = False
        """Whether the last batch is waiting (no lease, or Redis unreachable)."""
        self.last_error = ""
        self.lag_ms: int | None = None

    def emit(self, item: IngestItem) -> None:
        """Buffer one item, or count it as overflow when the buffer is at its bound."""
        if len(self._buffer) >= self.buffer_limit:
            self.overflow += 1
            self.stats.received += 1
            if self.overflow in (1, 1000) or self.overflow % 10_000 == 0:
                log.warning(
                    "%s: buffer full (%d items), %d dropped so far",
                    self.lease.key,
                    self.buffer_limit,
                    self.overflow,
                )
            return
        super().emit(item)

    def fence(self) -> None:
        """The lease is another worker's now: publish nothing more, give the buffer up."""
        self.fenced = True
        self._has_items.set()
        self._full.set()

    async def _publish_batch(self) -> None:
        batch = list(islice(self._buffer, self.settings.batch_size))
        delay = 0.05
        while True:
            if self.fenced:
                self.dropped += len(self._buffer)
                self._buffer.clear()
                self._room.set()
                return
            try:
                async with self.redis_slots, asyncio.timeout(PUBLISH_TIMEOUT):
                    sessions = await self._gate()
                    if sessions is not None:
                        await self._publish_to(sessions, batch)
                        break
            except PUBLISH_ERRORS as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.held_back = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
        self.held_back = False
        for _ in batch:
            self._buffer.popleft()
        self._room.set()

    async def _gate(self) -> tuple[str, ...] | None:
        """The sessions to publish to now, or ``None`` while the lease is not ours (fencing).

        One pipelined round trip: the lease's value and each session's status.
        """
        token = self.lease.token
        if token is None or not self.lease.valid():
            return None
        sessions = self.sessions
        pipe = self.bus.redis.pipeline(transaction=False)
        pipe.get(self.lease.key)
        for session_id in sessions:
            pipe.hget(keys.session(session_id), "status")
        current, *statuses = await pipe.execute()
        if current != token:
            self.lease.lapse()
            return None
        return tuple(
            session_id
            for session_id, status in zip(sessions, statuses, strict=True)
            if status is not None and orjson.loads(status) != "ended"
        )

    async def _publish_to(self, sessions: tuple[str, ...], batch: list[IngestItem]) -> None:
        if not sessions:
            self.dropped += len(batch)
            return
        groups = grouped_by_kind(batch)
        for session_id in sessions:
            for kind, events in groups:
                ids = await self.bus.publish_many(session_id, kind, events)
                fresh = sum(1 for event_id in ids if event_id is not None)
                self.stats.published += fresh
                self.stats.duplicates += len(ids) - fresh
        stamps = [i.timestamp for i in batch if isinstance(i, NormalizedChatMessage)]
        if stamps:
            self.lag_ms = max(0, now_ms() - stamps[-1])

    async def _tick_loop(self) -> None:
        """Sample the counters only: the fleet worker writes one health record per reading."""
        while self._ticking:
            self.stats.sample()
            self._refresh_state()
            await asyncio.sleep(TICK_SECONDS)
