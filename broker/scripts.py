"""Lua scripts called by their SHA, and sent whole to a node that does not know them.

redis-py's own script object answers ``NOSCRIPT`` with ``SCRIPT LOAD`` on every primary the
client *believes* in, then ``EVALSHA`` again. On a cluster during a failover that belief can
be stale: the newly promoted primary (a replica never receives loaded scripts) is left out,
the second ``EVALSHA`` is refused too, and the call fails although the slot is served. A
``SCRIPT LOAD`` also needs every primary to answer. ``EVAL`` instead goes where the keys'
slot lives (following ``MOVED`` like any command) and leaves the script cached on exactly the
node that runs it, so the next call by SHA succeeds there. ioredis does the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

__all__ = ["Script"]


class Script:
    """One Lua script for one client: ``await script(keys=[...], args=[...])``."""

    def __init__(self, client: aioredis.Redis, source: str) -> None:
        self.redis = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        try:
            return await self.redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.redis.eval(self.source, len(keys), *keys, *args)
