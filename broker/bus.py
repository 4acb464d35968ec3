"""The publish primitive and the history reader.

Publishing appends each event to the session's capped stream and publishes it on the session's
channel in one Lua script, so every event clients see has an id (the stream id) and nothing is
published that the history does not hold. On a Redis Cluster the script publishes with
``SPUBLISH`` (sharded pub/sub): the message goes only to the shard that owns the session's
slot, where the script runs, instead of to every node. On a single Redis it keeps ``PUBLISH``,
which Redis 6.2 has too. Chat messages may carry a dedupe id: a message id seen before in the
session is dropped inside the same script, so two workers reading one platform channel publish
it once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from broker import keys
from broker.connection import is_cluster
from broker.models import now_ms

__all__ = [
    "Bus",
    "BusEvent",
    "OutgoingEvent",
    "RawHash",
    "Replay",
    "StreamEntries",
    "StreamKind",
    "decode_published",
    "encode_event",
    "parse_stream_id",
]

StreamKind = Literal["events", "chat", "polls"]
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]
"""XRANGE's answer as the bus's client gives it: it never decodes responses, so all bytes."""
RawHash = dict[bytes, bytes]
"""HGETALL's answer from a client that does not decode responses."""
CHANNEL_OF: dict[str, Any] = {
    "events": keys.events_channel,
    "chat": keys.chat_channel,
    "polls": keys.polls_channel,
}

PUBLISH_SCRIPT = """#!lua
-- The shebang makes Redis refuse the whole script up front when it is out of memory, instead
-- of failing at a later write after some events were appended but none published.
-- KEYS[1] stream; KEYS[1 + i] dedupe key of event i, or the stream key when it has none
-- ARGV[1] channel, ARGV[2] kind, ARGV[3] maxlen, ARGV[4] dedupe ttl, ARGV[4 + i] event i
local ids = {}
local lines = {}
for i = 5, #ARGV do
  local dedupe = KEYS[i - 3]
  local fresh = true
  if dedupe ~= KEYS[1] then
    fresh = redis.call('SET', dedupe, '1', 'NX', 'EX', ARGV[4])
  end
  if fresh then
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'k', ARGV[2], 'e', ARGV[i])
    if dedupe ~= KEYS[1] then
      redis.call('SET', dedupe, id, 'KEEPTTL')
    end
    ids[#ids + 1] = id
    lines[#lines + 1] = id .. ' ' .. ARGV[i]
  else
    ids[#ids + 1] = ''
  end
end
if #lines > 0 then
  redis.call('PUBLISH', ARGV[1], table.concat(lines, '\\n'))
end
return ids
"""


SHARDED_PUBLISH_SCRIPT = PUBLISH_SCRIPT.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
"""The same script for a cluster: ``SPUBLISH`` in the session's slot, read by ``SSUBSCRIBE``."""


DELETE_SCRIPT = """#!lua
-- KEYS[1] stream, KEYS[2] deleted counter; ARGV event ids. Counts what XDEL really removed, so
-- a replay can tell deletions from trimming.
local removed = redis.call('XDEL', KEYS[1], unpack(ARGV))
if removed > 0 then redis.call('INCRBY', KEYS[2], removed) end
return removed
"""


def parse_stream_id(stream_id: str | bytes) -> tuple[int, int]:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``, for ordering ids."""
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def encode_event(type_: str, payload: dict[str, Any], timestamp: int | None = None) -> bytes:
    """The stored and published form of an event: ``{type, payload, timestamp}`` as JSON."""
    return orjson.dumps(
        {"type": type_, "payload": payload, "timestamp": timestamp if timestamp else now_ms()}
    )


@dataclass(slots=True)
class OutgoingEvent:
    """An event to publish; ``dedupe_id`` drops it when the session has seen that id already."""

    type: str
    payload: dict[str, Any]
    dedupe_id: str | None = None
    timestamp: int | None = None


@dataclass(slots=True)
class BusEvent:
    """An event as the bus carries it: session, kind, stream id and the encoded body."""

    session_id: str
    kind: str
    id: str
    raw: bytes
    _data: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def data(self) -> dict[str, Any]:
        """The decoded ``{type, payload, timestamp}``."""
        if self._data is None:
            self._data = orjson.loads(self.raw)
        return self._data

    @property
    def type(self) -> str:
        type_: str = self.data["type"]
        return type_

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = self.data["payload"]
        return payload

    def frame(self) -> bytes:
        """The wire frame with the event ``id`` added, built without re-encoding the body."""
        return self.raw[:-1] + b',"id":"' + self.id.encode() + b'"}'


@dataclass(slots=True)
class Replay:
    """Events after a given id, and whether that was all of them (nothing trimmed away)."""

    events: list[BusEvent]
    complete: bool


def decode_published(channel: str, data: bytes) -> list[BusEvent]:
    """Turn one pub/sub message of the publish script back into events."""
    session_id = keys.session_id_of_channel(channel)
    kind = channel.rsplit(":", 1)[1]
    events = []
    for line in data.split(b"\n"):
        event_id, _, raw = line.partition(b" ")
        if raw:
            events.append(BusEvent(session_id, kind, event_id.decode(), raw))
    return events


class Bus:
    """Publishing and reading one Redis's (or one cluster's) session streams and channels.

    ``sharded`` says whether the channels are sharded (``SPUBLISH``/``SSUBSCRIBE``): on a Redis
    Cluster, where a classic ``PUBLISH`` would be copied to every node.

    ``resubscribe_max_backoff`` caps the wait between reconnect attempts of a
    :class:`~broker.feed.SessionFeed` following this bus's channels.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        history_size: int = 10_000,
        dedupe_ttl: int = 3600,
        resubscribe_max_backoff: float = 5.0,
    ) -> None:
        self.redis = client
        self.history_size = history_size
        self.dedupe_ttl = dedupe_ttl
        self.resubscribe_max_backoff = resubscribe_max_backoff
        self.sharded = is_cluster(client)
        self._publish = client.register_script(
            SHARDED_PUBLISH_SCRIPT if self.sharded else PUBLISH_SCRIPT
        )
        self._delete = client.register_script(DELETE_SCRIPT)

    async def publish(
        self,
        session_id: str,
        kind: StreamKind,
        type_: str,
        payload: dict[str, Any],
        *,
        dedupe_id: str | None = None,
    ) -> str | None:
        """Append and publish one event; its stream id, or ``None`` if it was a duplicate."""
        [event_id] = await self.publish_many(
            session_id, kind, [OutgoingEvent(type_, payload, dedupe_id)]
        )
        return event_id

    async def publish_many(
        self, session_id: str, kind: StreamKind, events: Sequence[OutgoingEvent]
    ) -> list[str | None]:
        """Append and publish a batch in one atomic step; ids in order, ``None`` for duplicates."""
        if not events:
            return []
        stream = keys.stream(session_id)
        dedupe_keys = [
            keys.dedupe(session_id, event.dedupe_id) if event.dedupe_id else stream
            for event in events
        ]
        bodies = [encode_event(event.type, event.payload, event.timestamp) for event in events]
        ids = await self._publish(
            keys=[stream, *dedupe_keys],
            args=[
                CHANNEL_OF[kind](session_id),
                kind,
                self.history_size,
                self.dedupe_ttl,
                *bodies,
            ],
        )
        return [event_id.decode() if event_id else None for event_id in ids]

    async def stream_id_of(self, session_id: str, dedupe_id: str) -> str | None:
        """The stream id a deduplicated message was published under, if it still is known."""
        value = cast(bytes | None, await self.redis.get(keys.dedupe(session_id, dedupe_id)))
        return value.decode() if value and value != b"1" else None

    async def delete_events(self, session_id: str, event_ids: Sequence[str]) -> int:
        """Remove events from the history (moderation); how many were there to remove."""
        if not event_ids:
            return 0
        keys_ = [keys.stream(session_id), keys.stream_deleted(session_id)]
        return int(await self._delete(keys=keys_, args=list(event_ids)))

    async def last_id(self, session_id: str) -> str:
        """The id of the session's newest event, or ``"0-0"`` when it has none."""
        newest = cast(StreamEntries, await self.redis.xrevrange(keys.stream(session_id), count=1))
        return newest[0][0].decode() if newest else "0-0"

    async def replay(self, session_id: str, after_id: str, limit: int = 100_000) -> Replay:
        """Every event after ``after_id`` in order, and whether none of them had been trimmed."""
        stream = keys.stream(session_id)
        events: list[BusEvent] = []
        cursor = after_id
        while len(events) < limit:
            page = await self.redis.xrange(
                stream, min=f"({cursor}", max="+", count=min(1000, limit - len(events))
            )
            if not page:
                break
            events.extend(self._from_entries(session_id, cast(StreamEntries, page)))
            cursor = events[-1].id
        return Replay(events, await self._history_covers(session_id, after_id))

    async def _history_covers(self, session_id: str, after_id: str) -> bool:
        """Whether the stream still holds everything after ``after_id``.

        True when ``after_id`` is not older than the oldest entry, or when nothing was ever
        trimmed (entries added = entries present + entries deleted on purpose).
        """
        stream = keys.stream(session_id)
        after = parse_stream_id(after_id)
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip, not four
            pipe.xrevrange(stream, count=1)
            pipe.xrange(stream, count=1)
            pipe.xinfo_stream(stream)
            pipe.get(keys.stream_deleted(session_id))
            newest, oldest, info, deleted = await pipe.execute(raise_on_error=False)
        if newest and after > parse_stream_id(newest[0][0]):
            return False  # an id this history never issued (another Redis, a lost AOF)
        if oldest and after >= parse_stream_id(oldest[0][0]):
            return True
        if isinstance(info, ResponseError):  # no stream: nothing was published, or it was lost
            return after == (0, 0)
        added = info.get("entries-added", info.get(b"entries-added"))
        return added is not None and int(added) == int(info["length"]) + int(deleted or 0)

    @staticmethod
    def _from_entries(
        session_id: str, entries: Iterable[tuple[bytes, dict[bytes, bytes]]]
    ) -> list[BusEvent]:
        return [
            BusEvent(session_id, fields[b"k"].decode(), entry_id.decode(), fields[b"e"])
            for entry_id, fields in entries
        ]
