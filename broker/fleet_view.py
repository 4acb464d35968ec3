"""The fleet as people see it: who reads each wanted source, how it goes, which workers run.

Built from what the workers write (issue 15): their records (``fleet_workers``), their liveness
marks (``fleet_worker_alive``), the leases (``fleet_lease``: the value is the owner's lock
token) and the health each owner reports per source (``fleet_health``). :func:`read_fleet` reads
them in a few commands (every key of a fleet shares one hash tag, so multi-key reads are one
slot); :func:`fleet_view` is a pure function over what it read, so the rules are tested without
Redis. ``vstudio fleet status``, ``/metrics`` and the sources REST route all read through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from broker import keys
from broker.sources import SourceHealth, SourceSpec, Wanted, WorkerRecord

__all__ = [
    "MAX_REPLICAS",
    "UNCLAIMED",
    "FleetRaw",
    "FleetView",
    "SourceRow",
    "WorkerRow",
    "as_wanted",
    "fleet_view",
    "lease_owner",
    "read_fleet",
]

MAX_REPLICAS = 4
"""Lease replicas read per source: indexes 0-3 cover a redundancy of up to 3 counted from 0 or
from 1 (the spec caps redundancy at 3)."""
UNCLAIMED = "unclaimed"
"""The state of a wanted source that no worker holds a lease on."""
CLAIMED = "claimed"
"""An owner holds the lease but has not reported health yet."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class FleetRaw:
    """What :func:`read_fleet` read, as Redis returned it (hash values still JSON)."""

    wanted: dict[str, Wanted]
    workers: dict[str, str]
    alive: frozenset[str]
    health: dict[str, str]
    leases: dict[str, list[str]]
    """source id -> the lock tokens of its held leases."""


@dataclass(frozen=True)
class SourceRow:
    """One wanted source: its sessions, owners and the best of what its owners report."""

    id: str
    platform: str
    target: str
    credentials: str
    sessions: list[str]
    redundancy: int
    owners: list[str]
    state: str
    msg_per_s: float = 0.0
    lag_ms: int | None = None
    last_error: str = ""

    @property
    def unclaimed(self) -> bool:
        return not self.owners

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "platform": self.platform,
            "target": self.target,
            "credentials": self.credentials,
            "sessions": self.sessions,
            "redundancy": self.redundancy,
            "owners": self.owners,
            "state": self.state,
            "msgPerS": self.msg_per_s,
            "lagMs": self.lag_ms,
            "lastError": self.last_error,
        }


@dataclass(frozen=True)
class WorkerRow:
    """One worker's record, and whether its liveness mark is still there."""

    id: str
    host: str
    pid: int
    load: int
    capacity: int
    alive: bool
    seen: int
    sources: list[str] = field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "load": self.load,
            "capacity": self.capacity,
            "alive": self.alive,
            "seen": self.seen,
            "sources": self.sources,
        }


@dataclass(frozen=True)
class FleetView:
    sources: list[SourceRow]
    workers: list[WorkerRow]

    @property
    def unclaimed(self) -> list[SourceRow]:
        return [row for row in self.sources if row.unclaimed]

    def wire(self) -> dict[str, Any]:
        return {
            "sources": [row.wire() for row in self.sources],
            "workers": [row.wire() for row in self.workers],
            "unclaimed": [row.id for row in self.unclaimed],
        }


def lease_owner(token: str) -> str:
    """The worker a lease's lock token names: the workers write ``<worker id>/<random>`` (a new
    random part per acquisition, for fencing); a token without ``/`` is the id itself."""
    return token.rpartition("/")[0] or token


def _health(raw: dict[str, str]) -> dict[tuple[str, str], SourceHealth]:
    out: dict[tuple[str, str], SourceHealth] = {}
    for value in raw.values():
        try:
            health = SourceHealth.model_validate_json(value)
        except ValidationError:
            continue  # a record of a newer or broken worker: not worth failing the view
        out[(health.source, health.owner)] = health
    return out


def _workers(raw: dict[str, str], alive: frozenset[str]) -> list[WorkerRow]:
    rows: list[WorkerRow] = []
    for worker_id, value in sorted(raw.items()):
        try:
            record = WorkerRecord.model_validate_json(value)
        except ValidationError:
            continue
        rows.append(
            WorkerRow(
                id=record.id or worker_id,
                host=record.host,
                pid=record.pid,
                load=record.load,
                capacity=record.capacity,
                alive=worker_id in alive,
                seen=record.seen,
                sources=sorted(record.sources),
            )
        )
    return rows


def fleet_view(raw: FleetRaw, default_redundancy: int = 1) -> FleetView:
    """Every wanted source with its owners and health, every worker with its load.

    Owners are the lease holders (a lease outlives a killed worker by its TTL, which is the
    failover gap). Of the owners' reports the source shows the highest msg/s and the lowest
    lag (with redundancy every owner reads the same chat, and the dedupe delivers the first)
    and the owners' states, distinct and sorted, joined by ``/``. The last error is the latest
    any worker reported on the source, owner or not: a worker that could not start it (an
    unknown credentials name, say) reports ``failed`` without holding its lease.
    """
    workers = _workers(raw.workers, raw.alive)
    health = _health(raw.health)
    rows: list[SourceRow] = []
    for source_id, wanted in sorted(raw.wanted.items()):
        owners = sorted({lease_owner(token) for token in raw.leases.get(source_id, [])})
        reports = [health[(source_id, owner)] for owner in owners if (source_id, owner) in health]
        states = sorted({report.state for report in reports})
        if not owners:
            state = UNCLAIMED
        elif len(reports) < len(owners):
            state = "/".join(sorted({*states, CLAIMED}))
        else:
            state = "/".join(states)
        lags = [report.lag_ms for report in reports if report.lag_ms is not None]
        errors = sorted(
            (r for (source, _), r in health.items() if source == source_id and r.last_error),
            key=lambda r: r.seen,
        )
        spec = wanted.spec
        rows.append(
            SourceRow(
                id=source_id,
                platform=str(spec.platform),
                target=spec.target,
                credentials=spec.credentials,
                sessions=list(wanted.sessions),
                redundancy=spec.redundancy or default_redundancy,
                owners=owners,
                state=state,
                msg_per_s=max((report.msg_per_s for report in reports), default=0.0),
                lag_ms=min(lags) if lags else None,
                last_error=errors[-1].last_error if errors else "",
            )
        )
    return FleetView(sources=rows, workers=workers)


def as_wanted(session_id: str, specs: list[SourceSpec]) -> dict[str, Wanted]:
    """One session's declarations in the shape of the wanted sources, to view them whether the
    session wants them now or not (and without naming the other sessions a source feeds)."""
    return {spec.id: Wanted(spec, (session_id,)) for spec in specs}


async def read_fleet(redis: Any, fleet: str, wanted: dict[str, Wanted]) -> FleetRaw:
    """Read what :func:`fleet_view` needs about ``wanted`` (all of
    :meth:`~broker.sources.SourceStore.wanted`, or one session's, see :func:`as_wanted`): the
    workers' and health hashes, and one MGET each for the liveness marks and the leases
    (``MAX_REPLICAS`` per source)."""
    workers = {
        _text(k): _text(v) for k, v in (await redis.hgetall(keys.fleet_workers(fleet))).items()
    }
    health = {
        _text(k): _text(v) for k, v in (await redis.hgetall(keys.fleet_health(fleet))).items()
    }
    alive: set[str] = set()
    ids = sorted(workers)
    if ids:
        marks = await redis.mget([keys.fleet_worker_alive(fleet, wid) for wid in ids])
        alive = {wid for wid, mark in zip(ids, marks, strict=True) if mark is not None}
    leases: dict[str, list[str]] = {}
    names = [(sid, r) for sid in wanted for r in range(MAX_REPLICAS)]
    if names:
        tokens = await redis.mget([keys.fleet_lease(fleet, sid, r) for sid, r in names])
        for (source_id, _), token in zip(names, tokens, strict=True):
            if token is not None:
                leases.setdefault(source_id, []).append(_text(token))
    return FleetRaw(wanted, workers, frozenset(alive), health, leases)
