"""The frame value the hub sends, and coalescing chat into ``chat.aggregate`` frames.

An :class:`Outgoing` is one frame for every client of a session: its JSON is built once and
encoded lazily once per transport (WebSocket framing, an SSE event), as Centrifuge encodes a
publication once per protocol. It remembers the stream ids it covers, so a client that already
had some of them (through its replay) gets only the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from broker.bus import BusEvent, parse_stream_id
from broker.models import MessageType, now_ms
from server.wire import sse_event, ws_text_frame

__all__ = ["MAX_AGGREGATE", "ZERO", "Outgoing", "StreamId", "coalesce", "is_chat"]

StreamId = tuple[int, int]
ZERO: StreamId = (0, 0)
MAX_AGGREGATE = 500
"""Most chat messages in one ``chat.aggregate`` frame."""


@dataclass(slots=True)
class Outgoing:
    """One frame for every client of a session, encoded lazily once per transport."""

    type: str
    json: bytes
    first_id: StreamId
    last_id: StreamId
    timestamp: int
    payload: Callable[[], Any]
    event_id: str | None = None
    events: list[BusEvent] = field(default_factory=list)
    _ws: bytes | None = None
    _sse: bytes | None = None

    @property
    def ws(self) -> bytes:
        if self._ws is None:
            self._ws = ws_text_frame(self.json)
        return self._ws

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            data = orjson.dumps(self.payload())
            self._sse = sse_event(data, event=self.type, event_id=self.event_id)
        return self._sse

    @classmethod
    def of_event(cls, event: BusEvent) -> Outgoing:
        sid = parse_stream_id(event.id)
        return cls(
            type=event.type,
            json=event.frame(),
            first_id=sid,
            last_id=sid,
            timestamp=int(event.data.get("timestamp") or now_ms()),
            payload=lambda: event.payload,
            event_id=event.id,
            events=[event],
        )

    @classmethod
    def of_chat(cls, events: list[BusEvent]) -> Outgoing:
        """A ``chat.aggregate`` of chat messages; its id is the last message's id."""
        messages = [event.payload for event in events]
        body = {"messages": messages}
        last = events[-1]
        json = orjson.dumps(
            {
                "type": MessageType.CHAT_AGGREGATE,
                "payload": body,
                "timestamp": now_ms(),
                "id": last.id,
            }
        )
        return cls(
            type=MessageType.CHAT_AGGREGATE,
            json=json,
            first_id=parse_stream_id(events[0].id),
            last_id=parse_stream_id(last.id),
            timestamp=min(int(event.data.get("timestamp") or now_ms()) for event in events),
            payload=lambda: body,
            event_id=last.id,
            events=list(events),
        )

    def after(self, seen: StreamId) -> Outgoing | None:
        """This frame without the events of ids up to ``seen``; ``None`` if nothing is left."""
        if seen < self.first_id:
            return self
        if seen >= self.last_id:
            return None
        rest = [event for event in self.events if parse_stream_id(event.id) > seen]
        return coalesce(rest)[0] if rest else None


def is_chat(event: BusEvent) -> bool:
    """Whether the event is a chat message that goes out inside ``chat.aggregate``."""
    return event.kind == "chat" and event.type == MessageType.CHAT_MESSAGE


def coalesce(events: Iterable[BusEvent]) -> list[Outgoing]:
    """Frames for events in order: runs of chat messages become ``chat.aggregate`` frames."""
    frames: list[Outgoing] = []
    run: list[BusEvent] = []
    for event in events:
        if is_chat(event):
            run.append(event)
            if len(run) >= MAX_AGGREGATE:
                frames.append(Outgoing.of_chat(run))
                run = []
            continue
        if run:
            frames.append(Outgoing.of_chat(run))
            run = []
        frames.append(Outgoing.of_event(event))
    if run:
        frames.append(Outgoing.of_chat(run))
    return frames
