"""The fleet as ``vstudio fleet status`` sees it: worker records, liveness marks, health.

A worker keeps its :class:`~broker.sources.WorkerRecord` in the fleet's ``workers`` hash and a
liveness mark (a key with the lease TTL) beside it; a worker whose mark expired is dead, and
any worker prunes its record and health entries. Health is one
:class:`~broker.sources.SourceHealth` per reading in the ``health`` hash, field
``<source id>|<worker id>``, rewritten every reconcile tick; ``seen`` says how fresh it is.
All keys share the fleet's hash tag, so every command here stays in one slot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from broker import keys
from broker.sources import SourceHealth, WorkerRecord

__all__ = ["Registry"]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Registry:
    """Reads and writes one fleet's workers and health."""

    def __init__(self, redis: Any, fleet: str) -> None:
        self.redis = redis
        self.fleet = fleet
        self.workers_key = keys.fleet_workers(fleet)
        self.health_key = keys.fleet_health(fleet)

    async def live_workers(self) -> dict[str, WorkerRecord]:
        """Records of the workers whose liveness mark has not expired."""
        raw: dict[Any, Any] = await self.redis.hgetall(self.workers_key)
        records = {_text(k): WorkerRecord.model_validate_json(v) for k, v in raw.items()}
        if not records:
            return {}
        ids = sorted(records)
        marks = await self.redis.mget([keys.fleet_worker_alive(self.fleet, w) for w in ids])
        return {w: records[w] for w, mark in zip(ids, marks, strict=True) if mark is not None}

    async def beat(
        self,
        record: WorkerRecord,
        ttl: float,
        health: Iterable[SourceHealth],
        gone: Iterable[str] = (),
    ) -> None:
        """Write this worker's record, mark and health; drop the health of ``gone`` sources."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.workers_key, record.id, record.model_dump_json())
        pipe.set(keys.fleet_worker_alive(self.fleet, record.id), b"1", px=int(ttl * 1000))
        stale = [f"{source}|{record.id}" for source in gone]
        if stale:
            pipe.hdel(self.health_key, *stale)
        mapping = {f"{h.source}|{h.owner}": h.model_dump_json() for h in health}
        if mapping:
            pipe.hset(self.health_key, mapping=mapping)
        await pipe.execute()

    async def prune(self, alive: Iterable[str]) -> int:
        """Forget workers without a liveness mark and their health entries; how many."""
        living = set(alive)
        raw = await self.redis.hkeys(self.workers_key)
        dead = [_text(w) for w in raw if _text(w) not in living]
        fields = [
            f
            for f in map(_text, await self.redis.hkeys(self.health_key))
            if f.rpartition("|")[2] not in living
        ]
        if dead:
            await self.redis.hdel(self.workers_key, *dead)
        if fields:
            await self.redis.hdel(self.health_key, *fields)
        return len(dead)

    async def leave(self, worker_id: str, sources: Iterable[str]) -> None:
        """A clean stop: remove the record, the mark and the health at once."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(self.workers_key, worker_id)
        pipe.delete(keys.fleet_worker_alive(self.fleet, worker_id))
        fields = [f"{source}|{worker_id}" for source in sources]
        if fields:
            pipe.hdel(self.health_key, *fields)
        await pipe.execute()

    async def health(self) -> list[SourceHealth]:
        """Every health entry (for status views and tests)."""
        raw: dict[Any, Any] = await self.redis.hgetall(self.health_key)
        return [SourceHealth.model_validate_json(v) for v in raw.values()]
