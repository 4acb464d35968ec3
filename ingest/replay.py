"""Replaying recorded chat: a file of JSON lines, one NormalizedChatMessage (wire form) each.

Timing follows the recording (the gaps between ``timestamp`` values, divided by ``speed``),
a fixed ``rate`` instead, or no waiting at all (``speed=0``). A line that is not valid JSON or
not a valid message is reported with its line number and skipped; the rest plays on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from pydantic import ValidationError

from broker.models import NormalizedChatMessage, Platform
from ingest.base import AdapterState, AdapterStatus, Emit
from ingest.runtime import SourceExhausted, wait_for_room

__all__ = ["ReplayFile", "ReplayLineError", "Schedule", "parse_replay_line"]

log = logging.getLogger("vstudio.ingest.replay")

YIELD_EVERY = 100
"""Items emitted between yields to the event loop when no wait is due."""


class ReplayLineError(ValueError):
    """One line of a replay file that is not a chat message; says which and why."""


def parse_replay_line(text: str | bytes, number: int) -> NormalizedChatMessage:
    """Line ``number`` (1-based) as a message, or :class:`ReplayLineError`."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ReplayLineError(f"line {number}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ReplayLineError(f"line {number}: expected a JSON object, got {type(data).__name__}")
    try:
        return NormalizedChatMessage.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "message"
        raise ReplayLineError(f"line {number}: {where}: {first['msg']}") from exc


@dataclass
class Schedule:
    """When each message is due, in seconds after the replay started."""

    speed: float = 1.0
    rate: float | None = None
    _first_ts: int | None = None
    _count: int = 0

    def due(self, timestamp: int) -> float:
        """Offset of the next message: recorded gap / speed, or count / rate, or 0."""
        index = self._count
        self._count += 1
        if self.rate:
            return index / self.rate
        if self.speed <= 0:
            return 0.0
        if self._first_ts is None:
            self._first_ts = timestamp
        return max(0.0, (timestamp - self._first_ts) / 1000 / self.speed)


class ReplayFile:
    """An adapter emitting a recorded file's messages with their recorded timing."""

    platform = Platform.TWITCH
    source = "replay"

    def __init__(self, path: Path, *, speed: float = 1.0, rate: float | None = None) -> None:
        if speed < 0:
            raise ValueError("speed must be 0 (as fast as possible) or positive")
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        if not path.is_file():
            raise ValueError(f"replay file {path} does not exist")
        self.path = path
        self.target = path.name
        self.speed = speed
        self.rate = rate
        self.status = AdapterStatus()
        self.errors: list[str] = []
        self.emitted = 0
        self._next_line = 1

    @property
    def rejected(self) -> int:
        """Lines skipped because they were not valid messages."""
        return len(self.errors)

    async def run(self, emit: Emit) -> None:
        """Emit every good line once; a reconnect resumes after the last line emitted."""
        schedule = Schedule(self.speed, self.rate)
        self.status.state = AdapterState.CONNECTED
        self.status.detail = f"replaying {self.path.name}"
        start = time.monotonic()
        since_yield = 0
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if number < self._next_line or not line.strip():
                    continue
                self._next_line = number + 1
                try:
                    message = parse_replay_line(line, number)
                except ReplayLineError as exc:
                    self.errors.append(str(exc))
                    log.error("%s: %s", self.path.name, exc)
                    continue
                wait = start + schedule.due(message.timestamp) - time.monotonic()
                if wait > 0.001:
                    await asyncio.sleep(wait)
                    since_yield = 0
                emit(message)
                self.emitted += 1
                since_yield += 1
                if since_yield >= YIELD_EVERY:
                    since_yield = 0
                    await wait_for_room(emit)
        self.status.detail = f"replayed {self.emitted} messages, {len(self.errors)} bad lines"
        raise SourceExhausted(self.status.detail)
