"""The seed's metrics: ``ws_connections_total`` counts the *active* WebSocket connections."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory


def sample(text: str, name: str) -> float:
    """The value of an unlabelled sample ``name`` in a Prometheus text exposition."""
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics:\n{text}"
    return float(match.group(1))


async def metrics(server: LiveServer) -> str:
    status, text = await server.call("GET", "/metrics")
    assert status == 200
    return str(text)


async def until(server: LiveServer, name: str, value: float) -> str:
    """Read /metrics until ``name`` has ``value`` (a disconnect is noticed asynchronously)."""
    text = ""
    for _ in range(100):
        text = await metrics(server)
        if sample(text, name) == value:
            return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never became {value}:\n{text}")


async def test_ws_connections_total_is_a_gauge_of_open_websockets(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    sid = (await server.live_session())["id"]
    text = await metrics(server)
    assert "# TYPE ws_connections_total gauge" in text
    assert sample(text, "ws_connections_total") == 0
    async with server.ws(sid, "m1") as one:
        await one.receive_json(timeout=5)
        async with server.ws(sid, "m2") as two:
            await two.receive_json(timeout=5)
            await until(server, "ws_connections_total", 2)
        await until(server, "ws_connections_total", 1)
        token = server.token("sse-m")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{server.base_url}/v1/vstudio/sse/{sid}?token={token}") as response,
        ):
            await response.content.readline()
            text = await until(server, "sse_connections", 1)
            assert sample(text, "ws_connections_total") == 1  # SSE is its own series
    text = await until(server, "ws_connections_total", 0)
    await until(server, "sse_connections", 0)
