"""Shared fixtures: a real Redis for every test, and real servers on it.

``REDIS_URL`` points the suite at a running Redis; without it one embedded Valkey server is
started for the whole run. ``REDIS_CLUSTER=1`` points it at a local Redis Cluster of its own
instead (``tests/support/cluster.py``; ``-m cluster`` picks the tests written for one). Tests
stay apart by using fresh session ids, never by flushing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from broker import Bus, EmbeddedRedis, connect
from broker.models import SessionStatus
from tests.support.cluster import LocalCluster, local_cluster
from tests.support.live_server import LiveServer, live_servers
from tests.support.sessions import create_session_record
from tests.support.types import ServerFactory

CLUSTER_MODULES = frozenset(
    {
        "test_bus.py",
        "test_chat.py",
        "test_cluster_failover.py",
        "test_connection_caps.py",
        "test_fleet_status.py",
        "test_hub_resume_sharing.py",
        "test_ingest_runtime.py",
        "test_interactions_e2e.py",
        "test_keys.py",
        "test_moderation.py",
        "test_polls.py",
        "test_presence.py",
        "test_reactions.py",
        "test_server_cluster.py",
        "test_scripts.py",
        "test_server_sse.py",
        "test_sessions.py",
        "test_sources.py",
        "test_sources_api.py",
        "test_siwe.py",
        "test_storm_batches.py",
        "test_tickets_signed.py",
        "test_tips.py",
        "test_token_holder.py",
        "test_twitch_joins.py",
        "test_vote_batch.py",
    }
)
"""The interaction, resume, bus, ingest, connection-cap and wallet/token-gate tests: marked
``cluster``, so CI runs them a second time with ``REDIS_CLUSTER=1`` (about two minutes)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in CLUSTER_MODULES:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three primaries with a replica each, started once for the run and stopped after it."""
    with local_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Redis URL for the run: the local cluster with ``REDIS_CLUSTER=1``, else ``REDIS_URL``,
    else an embedded server of the suite's own."""
    if os.environ.get("REDIS_CLUSTER") == "1":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        yield cluster.url
        return
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("embedded-redis")) as embedded:
        yield embedded.url


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[Bus]:
    client = await connect(redis_url)
    try:
        yield Bus(client, history_size=1000)
    finally:
        await client.aclose()


@pytest.fixture
def session_id() -> str:
    """A session id no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def session_record(redis_url: str, session_id: str) -> str:
    """``session_id`` as a live session in Redis, for workers run without a server."""
    create_session_record(redis_url, session_id, SessionStatus.LIVE)
    return session_id


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(scope="session")
def live_server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One default ``vstudio serve`` shared by the whole run (do not stop it)."""
    server = LiveServer(redis_url, tmp_path_factory.mktemp("live-server"))
    yield server
    server.stop()


@pytest.fixture
def server_factory(redis_url: str, tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers of your own: ``server_factory(workers=2, VSTUDIO_MAX_VIEWERS="3")``."""
    with live_servers(redis_url, tmp_path) as start:
        yield start
