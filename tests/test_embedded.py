"""The embedded Valkey default: AOF on, data kept, clear refusals instead of hangs."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from broker import Bus, EmbeddedRedis, EmbeddedServerError, connect

pytestmark = pytest.mark.slow


async def _aof_enabled(url: str) -> bool:
    client = await connect(url)
    try:
        info = await client.info("persistence")
        return bool(info["aof_enabled"])
    finally:
        await client.aclose()


def test_starts_with_aof_and_keeps_data_across_restarts(data_dir: Path) -> None:
    with EmbeddedRedis(data_dir) as embedded:
        assert asyncio.run(_aof_enabled(embedded.url))
        assert embedded.record_path.exists()

        async def publish() -> str:
            client = await connect(embedded.url)
            event_id = await Bus(client).publish("keep", "events", "x", {"n": 1})
            await client.aclose()
            return event_id

        event_id = asyncio.run(publish())
    assert not (data_dir / "redis" / "embedded.json").exists()

    with EmbeddedRedis(data_dir) as embedded:

        async def read() -> list[str]:
            client = await connect(embedded.url)
            replay = await Bus(client).replay("keep", "0-0")
            await client.aclose()
            return [event.id for event in replay.events]

        assert asyncio.run(read()) == [event_id]


def test_a_second_start_on_a_folder_in_use_is_refused_clearly(data_dir: Path) -> None:
    with EmbeddedRedis(data_dir) as first:
        with pytest.raises(EmbeddedServerError, match=r"already running .* 'kill \d+'"):
            EmbeddedRedis(data_dir).start()
        assert first.pid is not None


def test_a_taken_port_is_refused_clearly(data_dir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(EmbeddedServerError, match=f"port {port} .* is taken"):
            EmbeddedRedis(data_dir, port=port).start()


def test_a_record_of_a_dead_server_is_ignored(data_dir: Path) -> None:
    (data_dir / "redis").mkdir(parents=True)
    (data_dir / "redis" / "embedded.json").write_text('{"pid": 999999, "port": 1}')
    with EmbeddedRedis(data_dir) as embedded:
        assert "@127.0.0.1:" in embedded.url


def test_commands_share_the_embedded_server_already_running(data_dir: Path) -> None:
    from broker.runtime import redis_url
    from config import BrokerSettings

    settings = BrokerSettings(data_dir=data_dir, redis_url=None)
    with EmbeddedRedis(data_dir) as first:
        with redis_url(settings) as url:
            assert url == first.url  # attached, not a second server on one AOF
        assert first.stale() is not None  # and leaving the block did not stop it


def test_a_picked_port_taken_before_the_server_binds_it_is_picked_again(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI failed once with "Port 47151 is already in use": between the kernel naming a free
    port and the server binding it, another process took it (the port was in the range the
    kernel also hands out to outgoing connections). A port we picked ourselves is picked again;
    only a port the user asked for is refused."""
    import broker.embedded

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = [taken]
        real_pick = broker.embedded.any_free_port
        # the kernel's answer, then another process binding it: the first pick is stale
        monkeypatch.setattr(
            broker.embedded,
            "any_free_port",
            lambda host: picks.pop() if picks else real_pick(host),
        )
        with EmbeddedRedis(data_dir) as embedded:
            assert not picks and not embedded.url.endswith(f":{taken}")

            async def ping() -> bool:
                client = await connect(embedded.url, attempts=1)
                try:
                    return bool(await client.ping())
                finally:
                    await client.aclose()

            assert asyncio.run(ping())
