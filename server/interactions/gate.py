"""A bound on the Redis calls the interaction handlers make at once in one process.

A vote storm puts thousands of handlers in flight at once. redis-py's default asyncio pool
refuses a call outright once its 100 connections are busy, and a blocking pool gives up after
its timeout; so interaction handlers queue here instead, and the bound leaves connections in
the pool for the fan-out, presence and the rest of the server.
"""

from __future__ import annotations

import asyncio

from server.context import ServerContext

__all__ = ["MAX_IN_FLIGHT", "redis_slot"]

MAX_IN_FLIGHT = 48


def redis_slot(ctx: ServerContext) -> asyncio.Semaphore:
    """This process's semaphore for interaction calls to Redis."""
    gate = ctx.extras.get("redis_gate")
    if gate is None:
        gate = ctx.extras["redis_gate"] = asyncio.Semaphore(MAX_IN_FLIGHT)
    return gate
