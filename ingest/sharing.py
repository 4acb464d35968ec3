"""The Redis client of the worker that runs an adapter, for budgets shared across workers.

The ``vstudio ingest`` commands build their adapter before Redis is up (the embedded server
starts later), so a shared budget (:mod:`ingest.quota`, :mod:`ingest.signbucket`) given without
a client takes the one of the :class:`~ingest.runtime.Worker` whose ``emit`` it is handed.
"""

from __future__ import annotations

from typing import Any

from ingest.base import Emit

__all__ = ["worker_redis"]


def worker_redis(emit: Emit) -> Any:
    """The Redis client behind ``emit`` when it is a worker's, else ``None``."""
    worker = getattr(emit, "__self__", None)
    bus = getattr(worker, "bus", None)
    return getattr(bus, "redis", None)
