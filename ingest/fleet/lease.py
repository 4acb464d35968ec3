"""One reading's lease: redis-py's asyncio ``Lock`` (SET NX PX, Lua extend and reacquire).

The lock's token is ``<worker id>/<random>``, so every worker reads who owns a reading from the
key's value (``owner_of``), and each acquisition is a new token: a worker that lost a lease and
took it again cannot be confused with its earlier self.

Fencing: :meth:`Lease.held` is checked before every publish batch. It is true only while the
lease is within its TTL as this worker measured it (from the start of the last successful
acquire or renew, so a worker that cannot reach Redis stops publishing when the TTL would have
run out) and Redis still holds this worker's token (so a lease deleted or taken by another
worker stops the publishing at the next batch).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from redis.asyncio.lock import Lock
from redis.exceptions import LockError

__all__ = ["Lease", "owner_of"]


def owner_of(token: bytes | str | None) -> str | None:
    """The worker id in a lease's value (``None`` for no lease)."""
    if token is None:
        return None
    text = token.decode() if isinstance(token, bytes) else token
    return text.rpartition("/")[0] or text


class Lease:
    """The lease on one reading, held by one worker."""

    def __init__(self, redis: Any, key: str, ttl: float, owner: str) -> None:
        self.key = key
        self.ttl = ttl
        self.owner = owner
        self._lock = Lock(redis, key, timeout=ttl, blocking=False, thread_local=False)
        self._valid_until = 0.0

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it (SET NX PX); ``False`` if somebody does."""
        started = time.monotonic()
        token = f"{self.owner}/{uuid.uuid4().hex[:12]}"
        if await self._lock.acquire(blocking=False, token=token):
            self._valid_until = started + self.ttl
            return True
        return False

    async def renew(self) -> bool:
        """Reset the TTL; ``False`` when the lease is no longer ours (expired, deleted, taken).

        Connection errors propagate: the caller keeps trying while :meth:`valid` says so.
        """
        started = time.monotonic()
        try:
            await self._lock.reacquire()
        except LockError:
            self._valid_until = 0.0
            return False
        self._valid_until = started + self.ttl
        return True

    @property
    def token(self) -> bytes | None:
        """This worker's token in the lease key (``None`` before the first acquire)."""
        token: bytes | None = self._lock.local.token
        return token

    def lapse(self) -> None:
        """Treat the lease as lost until the next successful acquire or renew."""
        self._valid_until = 0.0

    def valid(self) -> bool:
        """Whether the lease is within its TTL by this worker's own clock (no I/O)."""
        return time.monotonic() < self._valid_until

    async def held(self) -> bool:
        """The fencing check before a publish: valid by our clock and our token in Redis."""
        if not self.valid():
            return False
        if await self._lock.owned():
            return True
        self._valid_until = 0.0
        return False

    async def release(self) -> None:
        """Give the lease up (only if it is still ours: the Lua release compares the token)."""
        self._valid_until = 0.0
        try:
            await self._lock.release()
        except LockError:
            pass
