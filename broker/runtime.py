"""Getting a connected :class:`Bus` from settings: the configured Redis, or the embedded one."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

from broker.bus import Bus
from broker.connection import connect
from broker.embedded import EmbeddedRedis
from config import BrokerSettings

__all__ = ["open_bus", "redis_url"]

log = logging.getLogger("vstudio.broker.runtime")


@contextlib.contextmanager
def redis_url(settings: BrokerSettings) -> Iterator[str]:
    """The configured Redis URL; else the embedded server already running on the data folder
    (``vstudio up`` started it, say); else a new embedded server kept up for the block."""
    if settings.redis_url:
        yield settings.redis_url
        return
    embedded = EmbeddedRedis(settings.data_dir, port=settings.embedded_port)
    running = embedded.stale()
    url = embedded.running_url()
    if running and url:
        log.info(
            "using the embedded Valkey server already running on port %s (pid %s)",
            running["port"],
            running["pid"],
        )
        yield url
        return
    with embedded:
        yield embedded.url


@contextlib.asynccontextmanager
async def open_bus(settings: BrokerSettings, url: str) -> AsyncIterator[Bus]:
    """A :class:`Bus` on ``url`` with the settings' limits, closed after the block."""
    client = await connect(
        url, attempts=settings.connect_attempts, timeout=settings.connect_timeout
    )
    try:
        yield Bus(
            client,
            history_size=settings.history_size,
            dedupe_ttl=settings.dedupe_ttl,
            dedupe_cap=settings.dedupe_cap,
            resubscribe_max_backoff=settings.resubscribe_max_backoff,
        )
    finally:
        await client.aclose()
