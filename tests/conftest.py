"""Shared fixtures: a real Redis for every test, and real servers on it.

``REDIS_URL`` points the suite at a running Redis; without it one embedded Valkey server is
started for the whole run. Tests stay apart by using fresh session ids, never by flushing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from broker import Bus, EmbeddedRedis, connect
from broker.models import SessionStatus
from tests.support.live_server import LiveServer, live_servers
from tests.support.sessions import create_session_record
from tests.support.types import ServerFactory


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis URL for the run: ``REDIS_URL`` or an embedded server of the suite's own."""
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
