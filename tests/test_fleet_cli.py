"""``vstudio worker`` as people run it: exit codes, JSON status lines, a clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest

from broker import Bus, keys
from broker.sources import SourceSpec, SourceStore
from tests.support.fleet import ChattyTwitch, worker_command, worker_env
from tests.support.loopback import free_port
from tests.test_fleet import live_session


@pytest.fixture
async def twitch() -> AsyncIterator[ChattyTwitch]:
    async with ChattyTwitch(rate=5) as server:
        yield server


def test_unreachable_redis_at_start_exits_1_and_a_bad_fleet_name_2() -> None:
    env = {**os.environ, "VSTUDIO_CONNECT_ATTEMPTS": "1"}
    url = f"redis://127.0.0.1:{free_port()}"
    down = subprocess.run(
        worker_command("--redis-url", url), env=env, capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 1, down.stderr
    assert "did not answer" in down.stderr
    bad = subprocess.run(
        worker_command("--redis-url", url, "--fleet", "a:b"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "invalid setting fleet: String should match pattern" in bad.stderr


@pytest.mark.slow
async def test_sigterm_publishes_releases_and_says_so(
    bus: Bus, redis_url: str, twitch: ChattyTwitch
) -> None:
    fleet = f"f{uuid.uuid4().hex[:10]}"
    session_id = await live_session(bus)
    await SourceStore(bus.redis, fleet).add(session_id, SourceSpec(platform="twitch", target="t"))
    env = worker_env(redis_url, fleet, twitch.url, fleet_reconcile_interval=0.3)
    process = await asyncio.create_subprocess_exec(
        *worker_command("--capacity", "7"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    lease = keys.fleet_lease(fleet, "twitch:t", 0)
    try:
        for _ in range(300):
            if await bus.redis.get(lease) is not None:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the worker never claimed the source")
        process.terminate()
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert lines[0]["event"] == "started" and lines[0]["capacity"] == 7
    assert lines[-1]["event"] == "stopped" and lines[-1]["readings"] == 0
    assert await bus.redis.get(lease) is None  # released: another worker takes it at once
    assert await bus.redis.hgetall(keys.fleet_workers(fleet)) == {}
