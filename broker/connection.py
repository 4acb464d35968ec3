"""Connecting to Redis with retries, and errors that say what to do when it is not there."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

__all__ = ["TRANSIENT_ERRORS", "BusUnavailable", "connect", "redact_url"]

log = logging.getLogger("vstudio.broker.connection")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)
"""Errors after which trying again may succeed (Redis restarting, network blip)."""


class BusUnavailable(RuntimeError):
    """Redis could not be reached; the message says where and what to do about it."""


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to print."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}:***@{host}")
    return urlunsplit(parts)


async def connect(url: str, *, attempts: int = 5, timeout: float = 3.0) -> aioredis.Redis:
    """A client for ``url`` that has answered PING, or :class:`BusUnavailable`."""
    client = aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        health_check_interval=15,
        decode_responses=False,
    )
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.1),
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
            reraise=False,
        ):
            with attempt:
                await client.ping()
    except RetryError as exc:
        await client.aclose()
        cause = exc.last_attempt.exception()
        raise BusUnavailable(
            f"Redis at {redact_url(url)} did not answer after {attempts} attempts ({cause}). "
            "Start Redis there, fix --redis-url / VSTUDIO_REDIS_URL, or leave it unset to use "
            "the embedded server."
        ) from cause
    except Exception:
        await client.aclose()
        raise
    return client
