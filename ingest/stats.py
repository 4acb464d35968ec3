"""A worker's counters: what the status line shows and the heartbeat record carries.

Plain counting with an injectable clock, so rates are tested without waiting.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingest.base import AdapterState

__all__ = ["WorkerStats"]

RATE_WINDOW = 5.0
"""Seconds over which messages/s is averaged."""


@dataclass
class WorkerStats:
    """Counts of one worker since it started; ``received`` counts every emitted item."""

    clock: Callable[[], float] = time.monotonic
    received: int = 0
    published: int = 0
    duplicates: int = 0
    deletions: int = 0
    events: int = 0
    rejected: int = 0
    reconnects: int = 0
    state: AdapterState = AdapterState.STARTING
    detail: str = ""
    last_message_ms: int | None = None
    _samples: deque[tuple[float, int]] = field(default_factory=deque, repr=False)

    def sample(self) -> None:
        """Remember ``received`` now; :meth:`rate` measures between the kept samples."""
        now = self.clock()
        self._samples.append((now, self.received))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()

    def rate(self) -> float:
        """Items received per second over the last few seconds."""
        if len(self._samples) < 2:
            return 0.0
        (start, first), (end, last) = self._samples[0], self._samples[-1]
        return (last - first) / (end - start) if end > start else 0.0

    def last_message_age(self, now_ms: int) -> float | None:
        """Seconds since the newest message's timestamp, or ``None`` before the first."""
        if self.last_message_ms is None:
            return None
        return max(0.0, (now_ms - self.last_message_ms) / 1000)

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-ready camelCase fields."""
        return {
            "state": str(self.state),
            "detail": self.detail,
            "received": self.received,
            "published": self.published,
            "duplicates": self.duplicates,
            "deletions": self.deletions,
            "events": self.events,
            "rejected": self.rejected,
            "reconnects": self.reconnects,
            "rate": round(self.rate(), 1),
            "lastMessageAt": self.last_message_ms,
        }
