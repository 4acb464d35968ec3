"""Heartbeat records: every running worker on every machine, visible in Redis.

Each worker keeps one JSON value at ``broker.keys.ingest_worker(worker_id)`` with a TTL and
rewrites it every few seconds; a worker that dies silently disappears when the TTL runs out,
and a clean stop deletes its record at once. ``vstudio ingest status`` reads them all.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import orjson
import redis.asyncio as aioredis

from broker import keys

__all__ = ["delete_record", "new_worker_id", "read_records", "write_record"]


def new_worker_id(platform: str) -> str:
    """``<platform>-<host>-<pid>-<random>``: unique, and says where the worker runs."""
    host = socket.gethostname().split(".")[0].replace(":", "-") or "host"
    return f"{platform}-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def write_record(
    client: aioredis.Redis, worker_id: str, record: dict[str, Any], ttl: int
) -> None:
    """Write (or refresh) a worker's record, expiring after ``ttl`` seconds."""
    await client.set(keys.ingest_worker(worker_id), orjson.dumps(record), ex=ttl)


async def delete_record(client: aioredis.Redis, worker_id: str) -> None:
    """Remove a worker's record on a clean stop."""
    await client.delete(keys.ingest_worker(worker_id))


async def read_records(
    client: aioredis.Redis, session_id: str | None = None
) -> list[dict[str, Any]]:
    """Every live worker record (optionally of one session), sorted by session then worker."""
    names = [name async for name in client.scan_iter(match=keys.ingest_workers(), count=500)]
    records: list[dict[str, Any]] = []
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for raw in await client.mget(chunk):
            if raw is None:  # expired between SCAN and MGET
                continue
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and (session_id in (None, record.get("session"))):
                records.append(record)
    records.sort(key=lambda r: (str(r.get("session")), str(r.get("workerId"))))
    return records
