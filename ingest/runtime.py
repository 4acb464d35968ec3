"""The worker runtime every adapter runs in: collect, batch, publish, reconnect, heartbeat.

An :class:`~ingest.base.Adapter` only reads its platform and calls ``emit``. The
:class:`Worker` buffers what it emits and publishes it in batches (``batch_size`` items or
``batch_interval_ms``, whichever comes first) through :meth:`broker.bus.Bus.publish_many`, with
dedupe ids so a message is published once however many workers read it. When ``run`` raises
anything but :class:`~ingest.base.AdapterFatal`, or returns, the worker reconnects with
exponential backoff and jitter (tenacity), up to ``reconnect_attempts`` tries in a row. A try
counts as a success, resetting the count, when the adapter reported ``status.state`` as
``AdapterState.CONNECTED`` or emitted anything. Stopping (:meth:`Worker.stop`, wired to
SIGINT/SIGTERM by the CLI) cancels the adapter, publishes everything already emitted, and
deletes the heartbeat.

An adapter may have a ``source`` attribute naming it where ``platform`` cannot (``simulate``
and ``replay`` emit every platform); it names the worker in heartbeats and logs. A ``rejected``
attribute (input it had to skip: malformed lines, invalid messages) is shown with the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from itertools import islice
from typing import Any

from redis.exceptions import RedisError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from broker.bus import Bus
from broker.connection import TRANSIENT_ERRORS
from broker.models import MessageType, NormalizedChatMessage, now_ms
from config import IngestSettings
from ingest.base import Adapter, AdapterFatal, AdapterState, IngestItem
from ingest.batching import grouped_by_kind
from ingest.heartbeat import delete_record, new_worker_id, write_record
from ingest.stats import WorkerStats

__all__ = [
    "ConnectionDropped",
    "SourceExhausted",
    "Worker",
    "WorkerGaveUp",
    "wait_for_room",
]

log = logging.getLogger("vstudio.ingest.runtime")

TICK_SECONDS = 0.5
"""How often counters are sampled for messages/s."""

PUBLISH_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, RedisError)
"""Errors after which publishing is tried again: a connection lost, or Redis refusing for a
while (out of memory, a replica during failover)."""

BACKLOG_BATCHES = 20
"""An adapter calling :func:`wait_for_room` waits while more than this many batches wait."""

STOP_GRACE = 5.0
"""Seconds a stopping worker keeps trying to publish what it still holds; then (or at a second
stop) it gives the rest up and says how many, so a stop ends in bounded time even while Redis
is unreachable (issue 13)."""

PUBLISH_TIMEOUT = 10.0
"""Seconds one publish may take before it counts as failed (and is retried): a connection that
stalls without an error must not hold the worker forever."""


class SourceExhausted(Exception):
    """Raised by a finite adapter (replay) once it has emitted everything: the worker stops."""


class ConnectionDropped(ConnectionError):
    """The adapter's ``run`` returned: the platform closed the connection."""


class WorkerGaveUp(RuntimeError):
    """Reconnecting (or publishing) failed ``reconnect_attempts`` times in a row."""


def _retryable(exc: BaseException) -> bool:
    return (
        isinstance(exc, Exception)
        and not isinstance(exc, AdapterFatal | SourceExhausted)
        and _name_lookup_failure(exc) is None
    )


def _name_lookup_failure(exc: BaseException) -> socket.gaierror | None:
    """The DNS failure behind ``exc``, if any (issue 18): without a network or with a mistyped
    endpoint no retry helps, and ten of them took 2.5 minutes to say so."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return current
        os_error = getattr(current, "os_error", None)  # aiohttp's ClientConnectorError
        if isinstance(os_error, socket.gaierror):
            return os_error
        current = current.__cause__ or current.__context__
    return None


class Worker:
    """Runs one adapter for one session until stopped, exhausted, or out of retries."""

    def __init__(
        self,
        adapter: Adapter,
        bus: Bus,
        session_id: str,
        settings: IngestSettings,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.adapter = adapter
        self.bus = bus
        self.session_id = session_id
        self.settings = settings
        self.source = getattr(adapter, "source", None) or adapter.platform.value
        self.worker_id = worker_id or new_worker_id(self.source)
        self.stats = WorkerStats()
        self.started_at = now_ms()
        self._buffer: deque[IngestItem] = deque()
        self._has_items = asyncio.Event()
        self._room = asyncio.Event()
        self._full = asyncio.Event()
        self._draining = False
        self._ticking = False
        # The worker's own state (starting, failed, stopping, stopped) shows instead of the
        # adapter's; None while the adapter runs and its state is the one shown.
        self._own_state: AdapterState | None = AdapterState.STARTING
        self._reader: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._stop_requested = False
        self._abandoned = False

    # --- what adapters call ------------------------------------------------------------------

    def emit(self, item: IngestItem) -> None:
        """Take one item from the adapter; it is published with the next batch."""
        self._buffer.append(item)
        self.stats.received += 1
        if isinstance(item, NormalizedChatMessage):
            self.stats.last_message_ms = now_ms()
        self._has_items.set()
        if len(self._buffer) >= self.settings.batch_size:
            self._full.set()

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop: the adapter is cancelled, then the buffer is flushed for at
        most :data:`STOP_GRACE` seconds; a second stop gives the buffer up at once.

        Before, a stop only cancelled the adapter: a replay that had already finished reading
        was draining its buffer into an unreachable Redis, so SIGTERM and SIGINT did nothing
        until every batch had used up its retries.
        """
        if self._stop_requested:
            self._abandon()
            return
        self._stop_requested = True
        if self._reader is not None:
            self._reader.cancel()
        asyncio.get_running_loop().call_later(STOP_GRACE, self._abandon)

    def _abandon(self) -> None:
        """Stop publishing now; what is still buffered is reported as not published."""
        if self._flusher is not None and not self._flusher.done():
            self._abandoned = True
            self._flusher.cancel()

    async def room(self) -> None:
        """Wait while the backlog is over ``BACKLOG_BATCHES`` batches (or return at once)."""
        limit = BACKLOG_BATCHES * self.settings.batch_size
        while len(self._buffer) > limit and not self._draining:
            self._room.clear()
            await self._room.wait()
        await asyncio.sleep(0)

    @property
    def pending(self) -> int:
        """Items emitted but not yet published."""
        return len(self._buffer)

    async def run(self) -> None:
        """Run until :meth:`stop`, the end of a finite source, or a fatal error.

        Raises :class:`~ingest.base.AdapterFatal` or :class:`WorkerGaveUp` with a message for
        people. Whatever happens, everything emitted is published before it returns.
        """
        self._own_state = None
        self._ticking = True
        flusher = asyncio.create_task(self._flush_loop(), name=f"{self.worker_id}-flush")
        self._flusher = flusher
        ticker = asyncio.create_task(self._tick_loop(), name=f"{self.worker_id}-tick")
        self._reader = asyncio.create_task(self._connect_loop(), name=f"{self.worker_id}-reader")
        if self._stop_requested:
            self._reader.cancel()
        try:
            done, _ = await asyncio.wait(
                {self._reader, flusher}, return_when=asyncio.FIRST_COMPLETED
            )
            if flusher in done:  # publishing gave up: no point in reading more
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
                if not (flusher.cancelled() and self._abandoned):
                    flusher.result()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        finally:
            if not self._reader.done():
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._reader
            failed = self._own_state is AdapterState.FAILED
            self._own_state = AdapterState.STOPPING
            self._refresh_state()
            self._draining = True
            self._room.set()
            self._has_items.set()
            self._full.set()
            try:
                if not flusher.done():
                    await flusher
            except asyncio.CancelledError:
                if not self._abandoned:  # run() itself was cancelled
                    raise
            finally:
                # the flag stops the loop even when the cancel lands inside a Redis call and the
                # client absorbs it (Python 3.11's wait_for), which otherwise left run() hanging
                self._ticking = False
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                lost = self._abandoned and bool(self._buffer)
                failed = (
                    failed or lost or (not flusher.cancelled() and flusher.exception() is not None)
                )
                self._own_state = AdapterState.FAILED if failed else AdapterState.STOPPED
                self._refresh_state()
                with contextlib.suppress(*PUBLISH_ERRORS):
                    async with asyncio.timeout(2):
                        await delete_record(self.bus.redis, self.worker_id)
            if self._abandoned and self._buffer:
                raise WorkerGaveUp(
                    f"{self._label()}: stopped with {len(self._buffer)} emitted items not "
                    f"published (Redis did not take them within {STOP_GRACE:g} s of the stop)"
                )

    # --- reading the platform ----------------------------------------------------------------

    async def _connect_loop(self) -> None:
        settings = self.settings
        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.reconnect_attempts),
            wait=wait_exponential_jitter(
                multiplier=settings.reconnect_initial,
                max=settings.reconnect_max,
                jitter=settings.reconnect_initial,
            ),
            retry=retry_if_exception(_retryable),
            before_sleep=self._before_reconnect,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._run_adapter_once(attempt.retry_state)
        except SourceExhausted:
            log.info("%s finished", self._label())
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            self._own_state = AdapterState.FAILED
            raise WorkerGaveUp(
                f"{self._label()}: gave up after {settings.reconnect_attempts} failed connection "
                f"attempts in a row; last error: {_describe(cause)}"
            ) from cause
        except AdapterFatal:
            self._own_state = AdapterState.FAILED
            raise
        except Exception as exc:
            lookup = _name_lookup_failure(exc)
            if lookup is None:
                raise
            self._own_state = AdapterState.FAILED
            host = getattr(exc, "host", None)
            raise AdapterFatal(
                f"{self._label()}: cannot look up {host or 'the platform'}'s address "
                f"({lookup.strerror or lookup}): check this machine's network and DNS, and the "
                "platform's endpoint setting"
            ) from exc

    async def _run_adapter_once(self, retry_state: RetryCallState) -> None:
        received_before = self.stats.received
        self.adapter.status.state = AdapterState.CONNECTING
        try:
            await self.adapter.run(self.emit)
        finally:
            connected = self.adapter.status.state == AdapterState.CONNECTED
            if connected or self.stats.received > received_before:
                retry_state.attempt_number = 1  # a working connection resets the count
        raise ConnectionDropped("the platform closed the connection")

    def _before_reconnect(self, retry_state: RetryCallState) -> None:
        self.stats.reconnects += 1
        self.adapter.status.state = AdapterState.RECONNECTING
        self._refresh_state()
        cause = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        log.warning(
            "%s: connection lost (%s); reconnecting in %.1f s (attempt %d of %d)",
            self._label(),
            _describe(cause),
            wait,
            retry_state.attempt_number + 1,
            self.settings.reconnect_attempts,
        )

    # --- publishing --------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        interval = self.settings.batch_interval_ms / 1000
        while True:
            if not self._buffer:
                if self._draining:
                    return
                self._has_items.clear()
                await self._has_items.wait()
                continue
            if len(self._buffer) < self.settings.batch_size and not self._draining:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), interval)
            await self._publish_batch()

    async def _publish_batch(self) -> None:
        batch = list(islice(self._buffer, self.settings.batch_size))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.reconnect_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.settings.reconnect_initial / 4, max=self.settings.reconnect_max
            ),
            retry=retry_if_exception_type(PUBLISH_ERRORS),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with asyncio.timeout(PUBLISH_TIMEOUT):
                        await self._publish(batch)
        except PUBLISH_ERRORS as exc:
            raise WorkerGaveUp(
                f"{self._label()}: could not publish to Redis after "
                f"{self.settings.reconnect_attempts} attempts ({_describe(exc)}); "
                f"{len(self._buffer)} emitted items were not published"
            ) from exc
        for _ in batch:
            self._buffer.popleft()
        self._room.set()

    async def _publish(self, batch: list[IngestItem]) -> None:
        """Publish one batch; duplicates are counted, not published (dedupe makes retry safe)."""
        for kind, events in grouped_by_kind(batch):
            ids = await self.bus.publish_many(self.session_id, kind, events)
            for event, event_id in zip(events, ids, strict=True):
                if event_id is None:
                    self.stats.duplicates += 1
                    continue
                self.stats.published += 1
                if event.type == MessageType.CHAT_DELETE:
                    self.stats.deletions += 1
                elif event.type == MessageType.PLATFORM_EVENT:
                    self.stats.events += 1

    # --- status ------------------------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        """The heartbeat record: who, where, what, and the counters."""
        return {
            "workerId": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "platform": self.source,
            "target": self.adapter.target,
            "session": self.session_id,
            "startedAt": self.started_at,
            "updatedAt": now_ms(),
            "pending": self.pending,
            **self.stats.snapshot(),
        }

    def _refresh_state(self) -> None:
        own = self._own_state
        self.stats.state = self.adapter.status.state if own is None else own
        self.stats.detail = self.adapter.status.detail
        self.stats.rejected = getattr(self.adapter, "rejected", 0)

    async def _tick_loop(self) -> None:
        """Sample the counters; rewrite the heartbeat every ttl/3 s, and at once on a new state."""
        beat_every = max(1.0, self.settings.heartbeat_ttl / 3)
        next_beat = 0.0
        written_state: AdapterState | None = None
        while self._ticking:
            self.stats.sample()
            self._refresh_state()
            if time.monotonic() >= next_beat or self.stats.state != written_state:
                try:
                    await write_record(
                        self.bus.redis, self.worker_id, self.record(), self.settings.heartbeat_ttl
                    )
                    next_beat = time.monotonic() + beat_every
                    written_state = self.stats.state
                except PUBLISH_ERRORS as exc:
                    log.warning("heartbeat not written (%s)", _describe(exc))
            await asyncio.sleep(TICK_SECONDS)

    def _label(self) -> str:
        return f"{self.source} {self.adapter.target}"


async def wait_for_room(emit: object) -> None:
    """Backpressure for adapters that read as fast as they can (replay): when ``emit`` is a
    worker's, wait until its backlog is small; otherwise just yield to the event loop."""
    worker = getattr(emit, "__self__", None)
    if isinstance(worker, Worker):
        await worker.room()
    else:
        await asyncio.sleep(0)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
