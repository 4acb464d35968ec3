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

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from broker import keys
from broker.connection import is_cluster
from broker.ledger import LedgerEntry
from broker.models import now_ms
from broker.scripts import Script

__all__ = [
    "Bus",
    "BusEvent",
    "OutgoingEvent",
    "RawHash",
    "Replay",
    "StreamEntries",
    "StreamKind",
    "decode_published",
    "dedupe_digest",
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
-- KEYS[1] stream, KEYS[2] dedupe generation hash, KEYS[3] / KEYS[4] the two generations,
-- KEYS[5] ledger requests, KEYS[6] ledger stream, KEYS[7] ledger totals, KEYS[8] muted set.
-- ARGV[1] channel, ARGV[2] kind, ARGV[3] maxlen, ARGV[4] now ms, ARGV[5] window ms,
-- ARGV[6] ids per generation; then 7 per event: dedupe digest ('' = none), event,
-- ledger request ('' = none), ledger entry, totals field, amount in minor units, author's
-- mute key ('' = none: a muted author's message is dropped like a duplicate).
local meta = KEYS[2]
local cur = redis.call('HGET', meta, 'cur')
local started = tonumber(redis.call('HGET', meta, 'at') or '0')
local now, window, half = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local current, previous = KEYS[3], KEYS[4]
if cur == 'b' then current, previous = KEYS[4], KEYS[3] end
local function rotate()
  -- the previous generation is forgotten whole; the current one becomes the previous
  redis.call('DEL', previous)
  current, previous = previous, current
  cur = (cur == 'b') and 'a' or 'b'
  redis.call('HSET', meta, 'cur', cur, 'at', now)
end
if not cur then
  cur = 'a'
  redis.call('HSET', meta, 'cur', cur, 'at', now)
elseif now - started >= window then
  rotate()
end
local ids = {}
local lines = {}
local used = false
for i = 7, #ARGV, 7 do
  local digest = ARGV[i]
  local fresh = true
  if ARGV[i + 6] ~= '' and redis.call('SISMEMBER', KEYS[8], ARGV[i + 6]) == 1 then
    fresh = false
    digest = ''
  end
  if fresh and digest ~= '' then
    used = true
    fresh = redis.call('HEXISTS', current, digest) == 0
      and redis.call('HEXISTS', previous, digest) == 0
  end
  if fresh then
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*',
      'k', ARGV[2], 'e', ARGV[i + 1])
    if digest ~= '' then
      redis.call('HSET', current, digest, id)
      if redis.call('HLEN', current) >= half then rotate() end
    end
    ids[#ids + 1] = id
    lines[#lines + 1] = id .. ' ' .. ARGV[i + 1]
  else
    ids[#ids + 1] = ''
  end
  -- money counts once per ledger key, duplicate or not: a shared chat cheer's first copy (from
  -- another channel) carries no entry, its home channel's copy does
  if ARGV[i + 2] ~= '' and redis.call('HSETNX', KEYS[5], ARGV[i + 2], ARGV[i + 3]) == 1 then
    redis.call('XADD', KEYS[6], '*', 'tip', ARGV[i + 3])
    redis.call('HINCRBY', KEYS[7], ARGV[i + 4], ARGV[i + 5])
  end
end
if used then
  -- an idle session's dedupe memory goes away by itself after two windows
  local ttl = 2 * window
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PEXPIRE', current, ttl)
  redis.call('PEXPIRE', previous, ttl)
end
if #lines > 0 then
  redis.call('PUBLISH', ARGV[1], table.concat(lines, '\\n'))
end
return ids
"""


def dedupe_digest(dedupe_id: str) -> bytes:
    """The 8 bytes a session remembers of a message id: a 64-bit BLAKE2b digest. Within one
    session's window (at most the cap of ids) a collision is about 1 in 10^9 at a million ids."""
    return hashlib.blake2b(dedupe_id.encode(), digest_size=8).digest()


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
    """An event to publish; ``dedupe_id`` drops it when the session has seen that id already.

    With ``ledger``, publishing it also records that money in the session's ledger, once per
    ledger key however often the event is published (the dedupe window is bounded; the
    ledger's memory of what it counted is not)."""

    type: str
    payload: dict[str, Any]
    dedupe_id: str | None = None
    timestamp: int | None = None
    ledger: LedgerEntry | None = None
    author: str | None = None
    """The mute key of a platform message's author: dropped while that key is muted."""


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
        dedupe_cap: int = 200_000,
        resubscribe_max_backoff: float = 5.0,
    ) -> None:
        self.redis = client
        self.history_size = history_size
        self.dedupe_ttl = dedupe_ttl
        self.dedupe_cap = dedupe_cap
        self.resubscribe_max_backoff = resubscribe_max_backoff
        self.sharded = is_cluster(client)
        self._publish = Script(client, SHARDED_PUBLISH_SCRIPT if self.sharded else PUBLISH_SCRIPT)
        self._delete = Script(client, DELETE_SCRIPT)

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
        per_event: list[bytes | str | int] = []
        for event in events:
            ledger = event.ledger
            per_event += [
                dedupe_digest(event.dedupe_id) if event.dedupe_id else b"",
                encode_event(event.type, event.payload, event.timestamp),
                ledger.request if ledger else "",
                ledger.body if ledger else b"",
                ledger.totals_field if ledger else "",
                ledger.amount_minor if ledger else 0,
                event.author or "",
            ]
        ids = await self._publish(
            keys=[
                keys.stream(session_id),
                keys.dedupe_generation(session_id),
                *keys.dedupe_generations(session_id),
                keys.tip_requests(session_id),
                keys.tip_ledger(session_id),
                keys.ledger_totals(session_id),
                keys.muted(session_id),
            ],
            args=[
                CHANNEL_OF[kind](session_id),
                kind,
                self.history_size,
                now_ms(),
                self.dedupe_ttl * 1000,
                max(self.dedupe_cap // 2, 1),
                *per_event,
            ],
        )
        return [event_id.decode() if event_id else None for event_id in ids]

    async def stream_id_of(self, session_id: str, dedupe_id: str) -> str | None:
        """The stream id a deduplicated message was published under, if it still is known."""
        digest = dedupe_digest(dedupe_id)
        for generation in keys.dedupe_generations(session_id):
            value = cast(bytes | None, await self.redis.hget(generation, digest))
            if value:
                return value.decode()
        return None

    async def dedupe_memory(self, session_id: str) -> tuple[int, int]:
        """(ids remembered, bytes Redis uses for them) for one session: what bench measures."""
        count = 0
        used = 0
        for key in (keys.dedupe_generation(session_id), *keys.dedupe_generations(session_id)):
            if key != keys.dedupe_generation(session_id):
                count += int(await self.redis.hlen(key))
            used += int(await self.redis.memory_usage(key, samples=0) or 0)
        return count, used

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
