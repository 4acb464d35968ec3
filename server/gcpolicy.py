"""Short garbage collections in a process that holds thousands of long-lived connections.

CPython's full collection walks every tracked object. Each WebSocket connection is about 90 of
them, so at 10,000 viewers a full collection paused this process for 100 to 900 ms (measured
with ``gc.callbacks`` during ``bench/fanout.py``), and a connect storm set one off every few
hundred connections. Connections live long and are almost never garbage, so once connections
have arrived the survivors are moved out of the collector's sight (``gc.freeze()``, after a
young collection so fresh garbage is not frozen with them); the young generations still collect
short-lived garbage as before. Each freeze collects the youngest generation first, not the
middle one too: in a connect storm the middle one holds what survived a collection since the
last freeze (tens of thousands of objects a second), and a tick's collection of both took
20-150 ms (measured with ``gc.callbacks`` in ``bench/reconnect.py``) to find a few dozen
objects; those now wait for the next full collection. Cycles that frozen objects leave behind
when their connections close are reclaimed by one full collection over everything
(``gc.unfreeze()`` then ``gc.collect()``) once half as many connections as the peak have
closed, typically as a session empties, when a pause hurts least, and at the latest
:data:`THAW_EVERY_SECONDS` after the last one if anything was frozen since (garbage that other
long-lived objects leave waits no longer than that).

A young collection runs every :data:`YOUNG_THRESHOLD` new objects instead of CPython's 700. In a
vote storm every frame in flight is young, and so are the lists a tally's walk over thousands of
viewers holds across loop turns: each of the hundreds of young collections a second traversed
them again and promoted the in-flight objects, whose older collections then cost more still
(measured with ``gc.callbacks`` in ``bench/votes.py``: 145 ms of CPU per burst in collections at
700, none at 50,000). Garbage in cycles is still collected, a little later.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["YOUNG_THRESHOLD", "ConnectionCounts", "FreezePolicy", "keep_collections_short"]

log = logging.getLogger("vstudio.server.gcpolicy")

TICK_SECONDS = 1.0
"""How often the policy looks at the connection counts."""
THAW_MIN_CLOSED = 500
"""Closed connections below this never trigger a full collection on their own."""
THAW_EVERY_SECONDS = 600.0
"""The longest frozen garbage waits for a full collection, if anything was frozen meanwhile."""
YOUNG_THRESHOLD = 50_000
"""New objects between two young collections (CPython's default is 700)."""


class ConnectionCounts(Protocol):
    """Connections of this process: open now, opened and closed since it started."""

    @property
    def live(self) -> int: ...

    opened: int
    closed: int


@dataclass
class FreezePolicy:
    """Decides when to freeze survivors and when to collect everything, from connection counts."""

    opened_seen: int = 0
    opened_at_thaw: int = 0
    closed_at_thaw: int = 0
    peak: int = 0
    thawed_at: float = field(default_factory=time.monotonic)

    def tick(self, live: int, opened: int, closed: int, now: float | None = None) -> str | None:
        """Act on the totals of connections opened and closed so far; what it did, if anything."""
        now = time.monotonic() if now is None else now
        self.peak = max(self.peak, live)
        emptied = closed - self.closed_at_thaw >= max(THAW_MIN_CLOSED, self.peak // 2)
        overdue = now - self.thawed_at >= THAW_EVERY_SECONDS and opened > self.opened_at_thaw
        if emptied or overdue:
            started = time.perf_counter()
            gc.unfreeze()
            found = gc.collect()
            gc.freeze()
            log.info(
                "full garbage collection",
                extra={
                    "reason": "connections closed" if emptied else "interval",
                    "closed": closed - self.closed_at_thaw,
                    "unreachable": found,
                    "ms": round(1000 * (time.perf_counter() - started), 1),
                },
            )
            self.closed_at_thaw, self.opened_seen, self.peak = closed, opened, live
            self.opened_at_thaw, self.thawed_at = opened, now
            return "thaw"
        if opened > self.opened_seen:
            # the youngest generation only: fresh garbage is not frozen with the survivors, and
            # what survived a collection since the last freeze is not traversed again
            gc.collect(0)
            gc.freeze()
            self.opened_seen = opened
            return "freeze"
        return None


async def keep_collections_short(counts: ConnectionCounts) -> None:
    """Apply :class:`FreezePolicy` every :data:`TICK_SECONDS` to ``counts`` (the hub)."""
    policy = FreezePolicy()
    gc.freeze()  # what startup built (modules, the app) lives as long as the process
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    while True:
        await asyncio.sleep(TICK_SECONDS)
        try:
            policy.tick(counts.live, counts.opened, counts.closed)
        except Exception:
            log.exception("garbage collection policy failed")
