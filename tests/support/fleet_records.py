"""What a fleet worker writes to Redis (issue 15), written the way the worker writes it.

The fleet's wire contract, not a stand-in for a worker: its record in the workers' hash, its
liveness mark, a lease whose value is the lock token ``<worker id>/<random>``, and its health
report per source (``broker.sources``' models, ``broker.keys``' names). Tests of the views
(``vstudio fleet status``, ``/metrics``, the sources REST route) write these and read them back
through the real code.
"""

from __future__ import annotations

import time
from typing import Any

from broker import keys
from broker.sources import SourceHealth, WorkerRecord

__all__ = ["write_worker"]


async def write_worker(
    redis: Any,
    fleet: str,
    worker: str,
    readings: dict[str, str],
    *,
    sessions: list[str],
    host: str = "host-a",
    replica: int = 0,
    msg_per_s: float = 4.5,
    lag_ms: int | None = 120,
    last_error: str = "",
    alive: bool = True,
) -> None:
    """Worker ``worker`` holding ``readings`` (source id -> its health state)."""
    now = int(time.time() * 1000)
    record = WorkerRecord(
        id=worker, host=host, pid=4242, capacity=500, load=len(readings), started=now, seen=now,
        sources=[f"{source}#{replica}" for source in readings],
    )  # fmt: skip
    await redis.hset(keys.fleet_workers(fleet), worker, record.model_dump_json())
    if alive:
        await redis.set(keys.fleet_worker_alive(fleet, worker), b"1", px=15000)
    for source, state in readings.items():
        await redis.set(
            keys.fleet_lease(fleet, source, replica), f"{worker}/9f8e7d6c5b4a", px=15000
        )
        health = SourceHealth(
            source=source, owner=worker, state=state, sessions=sessions, msg_per_s=msg_per_s,
            lag_ms=lag_ms, last_error=last_error, seen=now,
        )  # fmt: skip
        await redis.hset(keys.fleet_health(fleet), f"{source}|{worker}", health.model_dump_json())
