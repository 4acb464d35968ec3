"""Connecting to Redis with retries, and errors that say what to do when it is not there.

``redis://`` (or ``rediss://``, ``unix://``) names one Redis; ``redis+cluster://HOST:PORT`` (or
``rediss+cluster://``) names a Redis Cluster through any one of its nodes, and gets redis-py's
asyncio :class:`~redis.asyncio.cluster.RedisCluster`. Both answer every command the project
sends with the same signatures (each command and script touches one slot), so callers hold
either as an ``aioredis.Redis``; the few places that differ (pub/sub, topology) ask
:func:`is_cluster`.
"""

from __future__ import annotations

import logging
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

__all__ = [
    "CLUSTER_NODE_CONNECTIONS",
    "TRANSIENT_ERRORS",
    "BusUnavailable",
    "cluster_of",
    "connect",
    "is_cluster",
    "is_cluster_url",
    "publish_counted",
    "redact_url",
]

log = logging.getLogger("vstudio.broker.connection")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    ClusterDownError,
    TryAgainError,
    MasterDownError,
)
"""Errors after which trying again may succeed (Redis restarting, network blip, a cluster
electing a new primary)."""

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
CLUSTER_NODE_CONNECTIONS = 512
"""Connections a cluster client opens to each node at most. redis-py's cluster pool cannot
queue callers as the single-Redis blocking pool does, so it is sized for a connect storm."""


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


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``)."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def is_cluster(client: aioredis.Redis) -> bool:
    """Whether ``client`` (as :func:`connect` returned it) talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def cluster_of(client: aioredis.Redis) -> RedisCluster:
    """``client`` as the cluster client it is; only after :func:`is_cluster` said so."""
    assert isinstance(client, RedisCluster)
    return client


async def publish_counted(client: aioredis.Redis, channel: str, data: bytes | str) -> int:
    """``PUBLISH``; how many subscribers got it. A cluster delivers a ``PUBLISH`` on every
    node but counts only the receiving node's subscribers, so there it goes to the node that
    owns ``channel``'s slot: where a subscriber that picks its node by slot listens."""
    if not is_cluster(client):
        return int(await client.publish(channel, data))
    cluster = cluster_of(client)
    node = cluster.get_node_from_key(channel)
    return int(await cluster.publish(channel, data, target_nodes=node))


def _node_url(url: str) -> str:
    """``redis+cluster://h:p`` -> ``redis://h:p``, the form redis-py's cluster client reads."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=CLUSTER_SCHEMES[parts.scheme]))


def _client(url: str, timeout: float, max_connections: int | None) -> aioredis.Redis:
    if is_cluster_url(url):
        cluster = RedisCluster.from_url(
            _node_url(url),
            socket_connect_timeout=timeout,
            health_check_interval=15,
            decode_responses=False,
            max_connections=CLUSTER_NODE_CONNECTIONS,
        )
        # RedisCluster offers every command the project sends, with the same signature
        return cast(aioredis.Redis, cluster)
    if max_connections is not None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=POOL_WAIT,
            socket_connect_timeout=timeout,
            health_check_interval=15,
            # a pool brings its own connection settings, without redis-py's default retry: a
            # Redis restart closes every pooled connection, and each would fail its next
            # command once. One immediate retry reconnects; a Redis still down fails at once.
            retry=Retry(NoBackoff(), 1),
        )
        return aioredis.Redis(connection_pool=pool)
    return aioredis.Redis.from_url(
        url, socket_connect_timeout=timeout, health_check_interval=15, decode_responses=False
    )


POOL_WAIT = 10.0
"""Seconds a caller waits for a free connection of a bounded single-Redis pool."""


async def connect(
    url: str, *, attempts: int = 5, timeout: float = 3.0, max_connections: int | None = None
) -> aioredis.Redis:
    """A client for ``url`` that has answered PING, or :class:`BusUnavailable`.

    ``max_connections`` bounds a single Redis's pool, whose callers then queue (up to
    :data:`POOL_WAIT` seconds) instead of failing; a cluster client has
    :data:`CLUSTER_NODE_CONNECTIONS` per node.
    """
    client = _client(url, timeout, max_connections)
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.1),
            # a cluster client that cannot reach any node yet says so with RedisClusterException
            retry=retry_if_exception_type((*TRANSIENT_ERRORS, RedisClusterException)),
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
