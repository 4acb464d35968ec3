"""A fleet worker: the I/O shell around :func:`~ingest.fleet.share.decide`.

Three loops on one event loop:

- **reconcile** (every ``fleet_reconcile_interval``): read what is wanted, who is alive and who
  holds which lease; release what :func:`decide` hands back (each reading is stopped, its buffer
  published, and only then its lease released, so a rebalance never has two readers of one
  replica), claim what it says to, keep each reading's sessions current, write the record and
  health;
- **renew** (every ``fleet_renew_interval``): reset every lease's TTL; a lease found gone is
  taken again if nobody else took it (Redis came back after an outage), else the reading is
  fenced: it publishes nothing more and its buffer is given up;
- the readings themselves (:class:`~ingest.fleet.reading.Reading`), one task each.

While Redis is unreachable, both loops keep failing quietly and the readings keep reading into
their bounded buffers; leases that lapse by this worker's clock stop all publishing until they
are renewed or taken again. :meth:`FleetWorker.stop` (SIGINT/SIGTERM) stops every reading,
publishes what it holds, and releases every lease, so a clean stop fails over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker import keys
from broker.bus import Bus
from broker.models import now_ms
from broker.sources import SourceHealth, SourceKind, SourceStore, Wanted, WorkerRecord
from config import IngestSettings
from ingest.base import AdapterState
from ingest.fleet.adapters import AdapterFactory, SharedConnections, build_adapter
from ingest.fleet.lease import Lease, owner_of
from ingest.fleet.reading import Reading
from ingest.fleet.registry import Registry
from ingest.fleet.share import Plan, View, decide
from ingest.fleet.share import Reading as Slot
from ingest.runtime import PUBLISH_ERRORS

__all__ = ["FleetWorker", "Running", "new_fleet_worker_id"]

log = logging.getLogger("vstudio.ingest.fleet")

REDIS_CONCURRENCY = 48
"""Most Redis calls a worker's readings and renewals make at once (the client's pool holds
100 connections; reconcile and status need a few more)."""

FAILED_COOLDOWN = 30.0
"""Seconds a worker leaves a reading alone after it failed there (others may try it)."""


def new_fleet_worker_id() -> str:
    """``<host>-<pid>-<random>``: unique, and says where the worker runs."""
    host = socket.gethostname().split(".")[0].replace(":", "-").replace("|", "-") or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Running:
    """A reading this worker runs: its lease, runtime and task."""

    slot: Slot
    lease: Lease
    reading: Reading
    task: asyncio.Task[None]


class FleetWorker:
    """Claims sources of one fleet by lease and reads them until stopped."""

    def __init__(
        self,
        bus: Bus,
        settings: IngestSettings,
        *,
        fleet: str = "default",
        capacity: int | None = None,
        redundancy: int | None = None,
        factories: Mapping[SourceKind, AdapterFactory] | None = None,
        worker_id: str | None = None,
        host: str | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.fleet = fleet
        self.capacity = capacity or settings.fleet_capacity
        self.redundancy = redundancy or settings.fleet_redundancy
        self.shared = SharedConnections(bus.redis, fleet)
        """Twitch IRC pools and Discord gateways shared by this worker's readings."""
        self.factories = factories or self.shared.factories()
        self.id = worker_id or new_fleet_worker_id()
        self.host = host or socket.gethostname()
        self.started = now_ms()
        self.store = SourceStore(bus.redis, fleet)
        self.registry = Registry(bus.redis, fleet)
        self.running: dict[Slot, Running] = {}
        self.share = 0
        self.wanted_count = 0
        self.reachable = True
        self.errors: dict[str, str] = {}
        self.overflow_before = 0
        self.ended: dict[str, int] = {"received": 0, "published": 0}
        """What readings that ended (released, handed back, failed) received and published, so
        the totals in :meth:`status` (and the last status line after a stop) keep them."""
        self._cooldown: dict[Slot, float] = {}
        self._stopping = asyncio.Event()
        self._redis_slots = asyncio.Semaphore(REDIS_CONCURRENCY)
        self._gone: set[str] = set()

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop (signal handlers call this)."""
        self._stopping.set()

    async def run(self) -> None:
        """Reconcile and renew until :meth:`stop`; then stop every reading and release."""
        settings = self.settings
        loops = [
            asyncio.create_task(self._every(settings.fleet_reconcile_interval, self.reconcile)),
            asyncio.create_task(self._every(settings.fleet_renew_interval, self.renew)),
        ]
        try:
            await self._stopping.wait()
        finally:
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._shutdown()

    async def _every(self, interval: float, step: Any) -> None:
        # the flag ends the loop even when a cancel lands inside a Redis call and the client
        # absorbs it (Python 3.11's wait_for), which left a stopped worker running forever
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await step()
                if not self.reachable:
                    log.info("Redis is back: %d readings resume", len(self.running))
                self.reachable = True
            except PUBLISH_ERRORS as exc:
                if self.reachable:
                    log.warning(
                        "Redis unreachable (%s): %d readings keep reading into their buffers",
                        exc,
                        len(self.running),
                    )
                self.reachable = False
            with contextlib.suppress(TimeoutError):
                wait = max(0.0, interval - (time.monotonic() - started))
                await asyncio.wait_for(self._stopping.wait(), wait)

    async def _shutdown(self) -> None:
        slots = list(self.running)
        await asyncio.gather(*(self._drop(slot) for slot in slots), return_exceptions=True)
        await self.shared.aclose()
        with contextlib.suppress(*PUBLISH_ERRORS):
            async with asyncio.timeout(2):
                await self.registry.leave(self.id, {s.source for s in slots} | self._gone)

    # --- reconcile ---------------------------------------------------------------------------

    async def reconcile(self) -> Plan:
        """One tick: look, decide, act, report."""
        await self._reap()
        wanted = await self.store.wanted(now_ms(), self.settings.fleet_lead_seconds * 1000)
        self.wanted_count = len(wanted)
        await self.registry.beat(self.record(), self.settings.fleet_lease_ttl, [])
        workers = await self.registry.live_workers()
        hosts = {w: record.host for w, record in workers.items()}
        hosts[self.id] = self.host
        redundancy = {sid: w.spec.redundancy or self.redundancy for sid, w in wanted.items()}
        owners = await self._owners(redundancy)
        plan = decide(View(self.id, self.capacity, redundancy, hosts, owners))
        self.share = plan.share
        await asyncio.gather(*(self._drop(slot) for slot in plan.release))
        for slot in plan.claim:
            await self._claim(slot, wanted[slot.source])
        for slot, running in self.running.items():
            if slot.source in wanted:
                running.reading.sessions = wanted[slot.source].sessions
        await self.registry.beat(
            self.record(), self.settings.fleet_lease_ttl, self.health(), self._gone
        )
        self._gone.clear()
        if len(workers) < len(await self.bus.redis.hkeys(self.registry.workers_key)):
            await self.registry.prune(hosts)
        return plan

    async def _owners(self, redundancy: Mapping[str, int]) -> dict[Slot, str]:
        slots = [Slot(s, r) for s, n in redundancy.items() for r in range(n)]
        slots += [slot for slot in self.running if slot not in set(slots)]
        if not slots:
            return {}
        values = await self.bus.redis.mget(
            [keys.fleet_lease(self.fleet, s.source, s.replica) for s in slots]
        )
        owners = {s: owner for s, v in zip(slots, values, strict=True) if (owner := owner_of(v))}
        for slot, running in self.running.items():
            # a lease of ours that lapsed (Redis was away) is still ours to take back first
            if slot not in owners and running.lease.token is not None:
                owners[slot] = self.id
        return owners

    async def _claim(self, slot: Slot, wanted: Wanted) -> None:
        if time.monotonic() < self._cooldown.get(slot, 0.0):
            return
        lease = Lease(
            self.bus.redis,
            keys.fleet_lease(self.fleet, slot.source, slot.replica),
            self.settings.fleet_lease_ttl,
            self.id,
        )
        try:
            adapter = build_adapter(wanted.spec, self.settings, self.factories)
        except Exception as exc:
            self.errors[slot.source] = str(exc)
            self._cooldown[slot] = time.monotonic() + FAILED_COOLDOWN
            log.error("%s", exc)
            return
        if not await lease.acquire():
            return
        reading = Reading(
            adapter,
            self.bus,
            wanted.sessions,
            self.settings,
            lease=lease,
            worker_id=f"{self.id}/{slot.source}/{slot.replica}",
            redis_slots=self._redis_slots,
        )
        task = asyncio.create_task(reading.run(), name=f"fleet-{slot.source}-{slot.replica}")
        self.running[slot] = Running(slot, lease, reading, task)
        self.errors.pop(slot.source, None)
        log.info("claimed %s (replica %d) for %s", slot.source, slot.replica, wanted.sessions)

    async def _drop(self, slot: Slot) -> None:
        """Stop a reading, publish what it holds (while the lease is ours), then release."""
        running = self.running.pop(slot, None)
        if running is None:
            return
        running.reading.stop()
        await asyncio.wait({running.task})  # our own cancellation still propagates
        self._note_end(running)
        with contextlib.suppress(*PUBLISH_ERRORS):
            await running.lease.release()
        self._gone.add(slot.source)
        log.info("released %s (replica %d)", slot.source, slot.replica)

    async def _reap(self) -> None:
        """Forget readings whose task ended on its own (the platform failed): release later."""
        for slot, running in list(self.running.items()):
            if running.task.done():
                del self.running[slot]
                self._note_end(running)
                self._cooldown[slot] = time.monotonic() + FAILED_COOLDOWN
                self._gone.add(slot.source)
                await running.lease.release()

    def _note_end(self, running: Running) -> None:
        task = running.task
        if task.done() and not task.cancelled() and task.exception() is not None:
            error = str(task.exception())
            self.errors[running.slot.source] = error
            log.error("%s: %s", running.slot.source, error)
        self.overflow_before += running.reading.overflow
        self.ended["received"] += running.reading.stats.received
        self.ended["published"] += running.reading.stats.published

    # --- renew -------------------------------------------------------------------------------

    async def renew(self) -> None:
        """Reset every lease's TTL; take a lapsed one back if free, else fence its reading."""
        results = await asyncio.gather(
            *(self._renew_one(r) for r in list(self.running.values())), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _renew_one(self, running: Running) -> None:
        async with self._redis_slots:
            if await running.lease.renew() or await running.lease.acquire():
                return
        log.warning(
            "lost the lease on %s (replica %d) to another worker: fenced",
            running.slot.source,
            running.slot.replica,
        )
        running.reading.fence()
        running.reading.stop()
        self.running.pop(running.slot, None)
        self._gone.add(running.slot.source)
        await asyncio.wait({running.task})
        self._note_end(running)

    # --- status ------------------------------------------------------------------------------

    @property
    def overflow(self) -> int:
        """Items dropped on full buffers, over this worker's life."""
        return self.overflow_before + sum(r.reading.overflow for r in self.running.values())

    def record(self) -> WorkerRecord:
        return WorkerRecord(
            id=self.id,
            host=self.host,
            pid=os.getpid(),
            capacity=self.capacity,
            load=len(self.running),
            started=self.started,
            seen=now_ms(),
            sources=sorted(f"{s.source}#{s.replica}" for s in self.running),
        )

    def health(self) -> list[SourceHealth]:
        now = now_ms()
        out = []
        for slot, running in self.running.items():
            reading = running.reading
            state = str(reading.stats.state)
            if reading.held_back and reading.stats.state is AdapterState.CONNECTED:
                state = "buffering"
            error = reading.last_error
            if reading.overflow:
                error = f"buffer overflow: {reading.overflow} dropped" + (
                    f"; {error}" if error else ""
                )
            out.append(
                SourceHealth(
                    source=slot.source,
                    owner=self.id,
                    state=state,
                    sessions=list(reading.sessions),
                    msg_per_s=round(reading.stats.rate(), 2),
                    lag_ms=reading.lag_ms,
                    last_error=error,
                    seen=now,
                )
            )
        reading_now = {slot.source for slot in self.running}
        out += [
            SourceHealth(
                source=source,
                owner=self.id,
                state=AdapterState.FAILED.value,
                sessions=[],
                last_error=error,
                seen=now,
            )
            for source, error in self.errors.items()
            if source not in reading_now
        ]
        return out

    def status(self) -> dict[str, Any]:
        """One line's worth for the CLI: what this worker reads and how."""
        readings = [r.reading for r in self.running.values()]
        return {
            "worker": self.id,
            "fleet": self.fleet,
            "host": self.host,
            "reachable": self.reachable,
            "wanted": self.wanted_count,
            "readings": len(readings),
            "share": self.share,
            "capacity": self.capacity,
            "rate": round(sum(r.stats.rate() for r in readings), 1),
            "received": self.ended["received"] + sum(r.stats.received for r in readings),
            "published": self.ended["published"] + sum(r.stats.published for r in readings),
            "buffered": sum(r.pending for r in readings),
            "overflow": self.overflow,
            "errors": dict(self.errors),
        }
