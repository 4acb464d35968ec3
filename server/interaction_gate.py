"""A bound on the Redis calls the interaction handlers make at once in one process.

redis-py's asyncio pool refuses a call outright (``MaxConnectionsError``) once its connections
(100 by default) are all busy, instead of waiting. A vote storm puts thousands of handlers in
flight at once, so they queue here for a connection rather than fail; the bound leaves room in
the pool for the fan-out and the rest of the server.
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
