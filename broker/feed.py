"""A process's subscription to live sessions that survives a Redis restart or a failover.

One pub/sub connection follows any number of sessions on a single Redis. On a Redis Cluster
the feed uses sharded pub/sub (``SSUBSCRIBE``, where the publish script's ``SPUBLISH`` lands)
with one connection to each primary that owns a followed session's slot. When a connection
drops, or the cluster moves a slot (a failover: the old owner unsubscribes us, or answers
``MOVED``), the feed drops every connection, reconnects with backoff, subscribes again on the
owners of the moment, and reads from each session's stream everything after the last id it
delivered, so its caller sees every event once and in order. Each reconnection is announced
with a :class:`Resumed` item naming the id replay started from.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MovedError, RedisClusterException
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from broker import keys
from broker.bus import Bus, BusEvent, decode_published, parse_stream_id
from broker.connection import TRANSIENT_ERRORS, cluster_of, is_cluster
from broker.tasks import stop_task

__all__ = ["FeedItem", "Resharded", "Resumed", "SessionFeed"]

log = logging.getLogger("vstudio.broker.feed")

POLL_SECONDS = 0.05
"""How long one read waits before the feed looks at follow/unfollow requests again."""
READ_SECONDS = 0.25
"""How long a shard's reader waits for a message before it looks whether it should stop."""
CONFIRM_SECONDS = 5.0
"""How long a subscribe may wait for the server's confirmation before the feed reconnects."""


class Resharded(ConnectionError):
    """A node stopped serving a followed session's slot: the cluster moved it elsewhere."""


LOST: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, MovedError, RedisClusterException)
"""What makes the feed reconnect: the transient errors, and a slot that moved."""


@dataclass(slots=True, frozen=True)
class Resumed:
    """The feed reconnected and replayed ``session_id`` from ``after_id``.

    ``complete`` is false when the history no longer held all of it; the caller should then
    send its clients the present state.
    """

    session_id: str
    after_id: str
    replayed: int
    complete: bool
    last_id: str | None = None
    """The newest replayed event's id (the replayed events follow this item)."""


FeedItem = BusEvent | Resumed


@dataclass(slots=True)
class _Follow:
    session_id: str
    after_id: str | None
    done: asyncio.Future[str]


class SessionFeed:
    """Follows sessions' channels and yields their events, gap-free across reconnects.

    Reconnect attempts wait from ``initial_backoff`` up to ``max_backoff`` seconds; without
    ``max_backoff`` the bus's ``resubscribe_max_backoff`` (the broker setting) caps the wait.
    """

    def __init__(
        self, bus: Bus, *, max_backoff: float | None = None, initial_backoff: float = 0.1
    ) -> None:
        self.bus = bus
        self.max_backoff = bus.resubscribe_max_backoff if max_backoff is None else max_backoff
        self.initial_backoff = initial_backoff
        self.reconnects = 0
        self._last_ids: dict[str, str] = {}
        self._requests: deque[_Follow | str] = deque()
        self._ready: deque[FeedItem] = deque()
        self._shards: dict[str, _Shard] = {}
        self._shard_of: dict[str, _Shard] = {}
        self._inbox: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._connected = False
        self._closed = False

    @property
    def sessions(self) -> list[str]:
        """Sessions followed now."""
        return list(self._last_ids)

    async def follow(self, session_id: str, after_id: str | None = None) -> str:
        """Start delivering ``session_id``'s events after ``after_id`` (default: from now).

        Returns once the feed is subscribed, with the id delivery starts after, so a caller
        that reads state next cannot miss an event published in between.
        """
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._requests.append(_Follow(session_id, after_id, done))
        return await done

    def unfollow(self, session_id: str) -> None:
        """Stop delivering ``session_id``'s events."""
        self._requests.append(session_id)

    async def close(self) -> None:
        """Stop iterating and release the connection."""
        self._closed = True
        await self._drop_connection()

    async def __aiter__(self) -> AsyncIterator[FeedItem]:
        while not self._closed:
            try:
                if not self._connected:
                    await self._reconnect()
                while self._ready:
                    yield self._ready.popleft()
                await self._apply_requests()
                if self._ready:
                    continue
                for event in await self._receive():
                    if self._is_new(event):
                        yield event
            except LOST as exc:
                if self._closed:
                    break
                log.warning("redis subscription lost (%s); reconnecting", exc)
                await self._drop_connection()

    async def _receive(self) -> list[BusEvent]:
        """The events of the next published message, waiting up to :data:`POLL_SECONDS`."""
        try:
            item = self._inbox.get_nowait()
        except asyncio.QueueEmpty:
            try:
                item = await asyncio.wait_for(self._inbox.get(), POLL_SECONDS)
            except TimeoutError:
                return []
        if isinstance(item, BaseException):
            raise item
        channel = item["channel"].decode()
        if item["type"] in ("message", "smessage"):
            return decode_published(channel, item["data"])
        if item["type"] == "sunsubscribe" and keys.session_id_of_channel(channel) in self._last_ids:
            raise Resharded(f"{channel} is no longer served where the feed subscribed")
        return []

    def _is_new(self, event: BusEvent) -> bool:
        last = self._last_ids.get(event.session_id)
        if last is None or parse_stream_id(event.id) <= parse_stream_id(last):
            return False
        self._last_ids[event.session_id] = event.id
        return True

    async def _apply_requests(self) -> None:
        while self._requests:
            request = self._requests.popleft()
            if isinstance(request, str):
                self._last_ids.pop(request, None)
                shard = self._shard_of.pop(request, None)
                if shard is not None:
                    await shard.unsubscribe(*keys.session_channels(request))
                continue
            try:
                after_id = request.after_id or await self.bus.last_id(request.session_id)
                await self._subscribe(request.session_id)
                self._last_ids.setdefault(request.session_id, after_id)
                await self._replay(request.session_id, after_id, announce=False)
            except LOST:
                self._requests.appendleft(request)  # applied again after the reconnect
                raise
            except Exception as exc:
                request.done.set_exception(exc)
                continue
            if not request.done.done():
                request.done.set_result(after_id)

    async def _subscribe(self, session_id: str) -> None:
        """Subscribe to the session's channels on the node that owns its slot now."""
        channels = keys.session_channels(session_id)
        name, make_client = _owner(self.bus.redis, channels[0])
        shard = self._shards.get(name)
        if shard is None:
            shard = self._shards[name] = _Shard(make_client(), self._inbox, self.bus.sharded)
        self._shard_of[session_id] = shard
        await shard.subscribe(channels)
        if self.bus.sharded:
            await shard.check_primary(channels[0])

    async def _replay(self, session_id: str, after_id: str, *, announce: bool) -> None:
        replay = await self.bus.replay(session_id, after_id)
        fresh = [event for event in replay.events if self._is_new(event)]
        if announce:
            last = fresh[-1].id if fresh else None
            self._ready.append(Resumed(session_id, after_id, len(fresh), replay.complete, last))
        self._ready.extend(fresh)

    async def _reconnect(self) -> None:
        """Connect to the owners of every followed session, subscribe, replay the gap."""
        first = self.reconnects == 0 and not self._connected and not self._last_ids
        async for attempt in AsyncRetrying(
            wait=wait_exponential_jitter(
                multiplier=self.initial_backoff, max=self.max_backoff, jitter=self.initial_backoff
            ),
            retry=retry_if_exception_type(LOST),
        ):
            with attempt:
                if self._closed:
                    return
                try:
                    if is_cluster(self.bus.redis) and not first:
                        await cluster_of(self.bus.redis).nodes_manager.initialize()
                    for session_id in list(self._last_ids):
                        await self._subscribe(session_id)
                    if not self._last_ids:
                        await self.bus.redis.ping()
                    for session_id, after_id in list(self._last_ids.items()):
                        await self._replay(session_id, after_id, announce=True)
                except BaseException:
                    await self._drop_connection()
                    raise
                self._connected = True
        if not first:
            self.reconnects += 1
            log.info("redis subscription restored for %d sessions", len(self._last_ids))

    async def _drop_connection(self) -> None:
        """Close every shard connection and forget what they had received."""
        shards, self._shards, self._shard_of = list(self._shards.values()), {}, {}
        self._connected = False
        self._inbox = asyncio.Queue()
        for shard in shards:
            await shard.close()


class _Shard:
    """One pub/sub connection (to a single Redis, or to one cluster primary) and its reader.

    The reader task puts every message, or the error that ended the connection, into the
    feed's inbox, so the feed waits on all its shards at once. ``sharded`` picks
    ``SSUBSCRIBE`` over ``SUBSCRIBE``, as the bus picks ``SPUBLISH`` over ``PUBLISH``.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        inbox: asyncio.Queue[dict[str, Any] | BaseException],
        sharded: bool,
    ) -> None:
        self.client = client
        self.pubsub = client.pubsub()
        self._send_subscribe = self.pubsub.ssubscribe if sharded else self.pubsub.subscribe
        self.unsubscribe = self.pubsub.sunsubscribe if sharded else self.pubsub.unsubscribe
        self._confirmation = "ssubscribe" if sharded else "subscribe"
        self._inbox = inbox
        self._confirming: dict[bytes, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closing = False

    async def subscribe(self, channels: tuple[str, ...]) -> None:
        """Subscribe and wait until the server confirmed every channel, so nothing published
        after this returns can be missed."""
        loop = asyncio.get_running_loop()
        waits = [self._confirming.setdefault(c.encode(), loop.create_future()) for c in channels]
        await self._send_subscribe(*channels)
        if self._reader is None:
            self._reader = loop.create_task(self._read(), name="feed-shard")
        done, _ = await asyncio.wait(waits, timeout=CONFIRM_SECONDS)
        for wait in done:
            wait.result()  # the error that ended the connection, if that is what happened
        if len(done) < len(waits):
            raise TimeoutError(f"no confirmation of SSUBSCRIBE {channels[0]}")

    async def check_primary(self, channel: str) -> None:
        """Refuse a node that is no longer its slot's primary (a failover under way).

        Our view of the cluster can lag a ``CLUSTER FAILOVER`` by a moment: a subscription
        placed on the demoted primary stays valid, but what the new primary publishes before
        that node has become its replica never reaches it, and the replay already ran, so
        those events would be skipped. Retrying (with the feed's backoff, after a fresh look
        at the slots) lands on the new primary instead.
        """
        nodes = await self.client.execute_command(  # type: ignore[no-untyped-call]  # redis-py: unannotated
            "CLUSTER", "NODES"
        )
        text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
        myself = next((line.split() for line in text.splitlines() if "myself" in line), None)
        if myself is None or "master" not in myself[2].split(","):
            raise RedisClusterException(f"{channel} is served by a node that is not its primary")

    async def _read(self) -> None:
        try:
            while not self._closing:
                message = await self.pubsub.get_message(timeout=READ_SECONDS)
                if message is None:
                    continue
                if message["type"] == self._confirmation:
                    confirmed = self._confirming.pop(message["channel"], None)
                    if confirmed is not None and not confirmed.done():
                        confirmed.set_result(None)
                    continue
                self._inbox.put_nowait(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for waiting in self._confirming.values():
                if not waiting.done():
                    waiting.set_exception(exc)
            self._inbox.put_nowait(exc)

    async def close(self) -> None:
        self._closing = True  # stops the reader even if a Redis call absorbs the cancel below
        if self._reader is not None:
            await stop_task(self._reader)
        for waiting in self._confirming.values():
            waiting.cancel()
        try:
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: unannotated
            await self.client.aclose()
        except Exception:  # the connection is already gone; nothing to release
            log.debug("closing a broken pub/sub connection failed", exc_info=True)


def _owner(client: aioredis.Redis, channel: str) -> tuple[str, Any]:
    """The name of the node that serves ``channel`` and a factory of a client of it."""
    if not is_cluster(client):
        return "redis", lambda: _client_without_retries(client)
    node = cluster_of(client).get_node_from_key(channel)
    assert node is not None
    kwargs = {key: value for key, value in node.connection_kwargs.items() if key != "retry"}

    def make() -> aioredis.Redis:
        pool = aioredis.ConnectionPool(
            connection_class=node.connection_class, retry=Retry(NoBackoff(), 0), **kwargs
        )
        return aioredis.Redis(connection_pool=pool)

    return node.name, make


def _client_without_retries(client: aioredis.Redis) -> aioredis.Redis:
    """A client like ``client`` whose pub/sub fails loudly on a drop.

    redis-py would otherwise reconnect and re-subscribe by itself, silently skipping whatever
    was published while the connection was down; the feed must notice to replay the gap.
    """
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
    return aioredis.Redis(
        connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )
