"""A process's subscription to live sessions that survives a Redis restart.

One pub/sub connection follows any number of sessions. When the connection drops, the feed
reconnects with backoff, subscribes again, and reads from each session's stream everything
after the last id it delivered, so its caller sees every event once and in order. Each
reconnection is announced with a :class:`Resumed` item naming the id replay started from.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from broker import keys
from broker.bus import Bus, BusEvent, decode_published, parse_stream_id
from broker.connection import TRANSIENT_ERRORS

__all__ = ["FeedItem", "Resumed", "SessionFeed"]

log = logging.getLogger("vstudio.broker.feed")

POLL_SECONDS = 0.05
"""How long one read waits before the feed looks at follow/unfollow requests again."""


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
        self._pubsub: aioredis.client.PubSub | None = None
        self._client = _client_without_retries(bus.redis)
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
        await self._client.aclose()

    async def __aiter__(self) -> AsyncIterator[FeedItem]:
        while not self._closed:
            try:
                if self._pubsub is None:
                    await self._reconnect()
                while self._ready:
                    yield self._ready.popleft()
                await self._apply_requests()
                if self._ready:
                    continue
                assert self._pubsub is not None
                if not self._pubsub.subscribed:
                    await asyncio.sleep(POLL_SECONDS)
                    continue
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=POLL_SECONDS
                )
                if message is not None and message["type"] == "message":
                    for event in decode_published(message["channel"].decode(), message["data"]):
                        if self._is_new(event):
                            yield event
            except TRANSIENT_ERRORS as exc:
                if self._closed:
                    break
                log.warning("redis subscription lost (%s); reconnecting", exc)
                await self._drop_connection()

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
                if self._pubsub is not None:
                    await self._pubsub.unsubscribe(*keys.session_channels(request))
                continue
            try:
                after_id = request.after_id or await self.bus.last_id(request.session_id)
                assert self._pubsub is not None
                await self._pubsub.subscribe(*keys.session_channels(request.session_id))
                self._last_ids.setdefault(request.session_id, after_id)
                await self._replay(request.session_id, after_id, announce=False)
            except TRANSIENT_ERRORS:
                self._requests.appendleft(request)  # applied again after the reconnect
                raise
            except Exception as exc:
                request.done.set_exception(exc)
                continue
            if not request.done.done():
                request.done.set_result(after_id)

    async def _replay(self, session_id: str, after_id: str, *, announce: bool) -> None:
        replay = await self.bus.replay(session_id, after_id)
        fresh = [event for event in replay.events if self._is_new(event)]
        if announce:
            last = fresh[-1].id if fresh else None
            self._ready.append(Resumed(session_id, after_id, len(fresh), replay.complete, last))
        self._ready.extend(fresh)

    async def _reconnect(self) -> None:
        """Open a pub/sub connection, subscribe to every followed session, replay the gap."""
        first = self.reconnects == 0 and self._pubsub is None and not self._last_ids
        async for attempt in AsyncRetrying(
            wait=wait_exponential_jitter(
                multiplier=self.initial_backoff, max=self.max_backoff, jitter=self.initial_backoff
            ),
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
        ):
            with attempt:
                if self._closed:
                    return
                pubsub = self._client.pubsub()
                try:
                    channels = [
                        channel
                        for session_id in self._last_ids
                        for channel in keys.session_channels(session_id)
                    ]
                    if channels:
                        await pubsub.subscribe(*channels)
                    else:
                        await self.bus.redis.ping()
                    for session_id, after_id in list(self._last_ids.items()):
                        await self._replay(session_id, after_id, announce=True)
                except BaseException:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: unannotated
                    raise
                self._pubsub = pubsub
        if not first:
            self.reconnects += 1
            log.info("redis subscription restored for %d sessions", len(self._last_ids))

    async def _drop_connection(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: unannotated
            except Exception:  # the connection is already gone; nothing to release
                log.debug("closing a broken pub/sub connection failed", exc_info=True)


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
