"""The embedded Valkey is locked: a password from the data folder, no dangerous commands."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ResponseError

from broker import EmbeddedRedis, connect
from broker.runtime import redis_url
from config import BrokerSettings

pytestmark = pytest.mark.slow


def test_a_client_without_the_password_is_refused(data_dir: Path) -> None:
    async def probe(port: int) -> None:
        client = aioredis.Redis(host="127.0.0.1", port=port)
        try:
            with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
                await client.set("k", "v")
            with pytest.raises((AuthenticationError, ResponseError)):
                await client.auth("not-the-password")
        finally:
            await client.aclose()

    with EmbeddedRedis(data_dir) as embedded:
        port = int(embedded.url.rsplit(":", 1)[1])
        asyncio.run(probe(port))


def test_dangerous_commands_are_refused_and_the_needed_ones_work(data_dir: Path) -> None:
    async def probe(url: str) -> None:
        client = await connect(url)
        try:
            for command in (
                ("CONFIG", "GET", "dir"),
                ("CONFIG", "SET", "dir", "/tmp"),
                ("DEBUG", "SLEEP", "0"),
                ("MODULE", "LIST"),
                ("FLUSHALL",),
                ("KEYS", "*"),
                ("SHUTDOWN", "NOSAVE"),
                ("SCRIPT", "KILL"),
                ("REPLICAOF", "127.0.0.1", "1"),
            ):
                with pytest.raises(ResponseError, match=r"(?i)permission|not allowed"):
                    await client.execute_command(*command)
            # a script cannot reach them either
            with pytest.raises(ResponseError, match=r"(?i)permission"):
                await client.eval("return redis.call('FLUSHALL')", 0)
            # what the project runs: data commands, scripts, pub/sub, streams, scan, INFO
            assert await client.eval("return redis.call('SET', KEYS[1], 'v')", 1, "lock:k")
            assert await client.xadd("lock:s", {"a": "1"})
            assert await client.publish("lock:c", "x") == 0
            assert [key async for key in client.scan_iter(match="lock:*")]
            info = await client.info("persistence")
            assert info["aof_enabled"] == 1
        finally:
            await client.aclose()

    with EmbeddedRedis(data_dir) as embedded:
        asyncio.run(probe(embedded.url))


def test_the_password_is_private_kept_and_never_logged(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    embedded = EmbeddedRedis(data_dir)
    with embedded:
        password = embedded.password()
        assert len(password) >= 32
        mode = stat.S_IMODE(embedded.password_path.stat().st_mode)
        assert mode == 0o600, oct(mode)
        assert password in embedded.url
    with EmbeddedRedis(data_dir) as again:  # the same password after a restart
        assert again.password() == password
    folder = data_dir / "redis"
    for path in folder.iterdir():
        if path.is_file() and path != embedded.password_path:
            assert password not in path.read_text(errors="replace"), path
    assert password not in caplog.text
    assert "started on redis://:***@127.0.0.1:" in caplog.text


def test_commands_beside_a_running_server_read_its_password(data_dir: Path) -> None:
    async def roundtrip(url: str) -> bytes | None:
        client = await connect(url, attempts=1)
        try:
            await client.set("beside", "yes")
            value: bytes | None = await client.get("beside")
            return value
        finally:
            await client.aclose()

    settings = BrokerSettings(data_dir=data_dir, redis_url=None)
    with EmbeddedRedis(data_dir) as first:
        with redis_url(settings) as url:
            assert url == first.url
            assert asyncio.run(roundtrip(url)) == b"yes"
