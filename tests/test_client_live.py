"""The Python client's live connection against a real server that is stopped and restarted:
it reconnects with a fresh ticket, resumes from the last event id, and loses or repeats
nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker import Bus
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory
from vstudio_cli.client import ApiError, Backoff, VStudioClient

pytestmark = pytest.mark.slow

QUICK = Backoff(initial=0.2, factor=2, maximum=1.0, retries=30, jitter=0.3)


async def collect(live: Any, count: int, seen: list[dict[str, Any]]) -> None:
    async for frame in live:
        if frame["type"] == "platform.event":
            seen.append(frame)
            if len(seen) == count:
                return


async def publish(bus: Bus, session_id: str, numbers: range) -> None:
    for n in numbers:
        payload = {
            "id": f"twitch:follow-{n}",
            "platform": "twitch",
            "kind": "follow",
            "username": f"fan{n}",
            "timestamp": n,
        }
        await bus.publish(session_id, "events", "platform.event", payload)


async def test_reconnects_after_a_restart_and_resumes_without_gaps(
    server_factory: ServerFactory, bus: Bus
) -> None:
    first = server_factory()
    session = await first.live_session()
    sid = session["id"]
    token = first.token("viewer-1")
    seen: list[dict[str, Any]] = []
    async with VStudioClient(first.base_url, token) as client:
        async with client.live(sid, backoff=QUICK) as live:
            reader = asyncio.create_task(collect(live, 30, seen))
            await publish(bus, sid, range(10))
            await _until(lambda: len(seen) == 10)

            first.stop()  # SIGTERM: clients get 1012 and come back
            await _until(lambda: live.state == "reconnecting")
            await publish(bus, sid, range(10, 20))  # while no server runs
            second = server_factory(port=first.port)
            await _until(lambda: live.state == "live", timeout=20)
            await publish(bus, sid, range(20, 30))
            await asyncio.wait_for(reader, 15)
            assert live.reconnects >= 1
            pong = await live.request("ping")
            assert pong == {}
        second.stop()
    usernames = [frame["payload"]["username"] for frame in seen]
    assert usernames == [f"fan{n}" for n in range(30)]
    ids = [frame["id"] for frame in seen]
    assert len(set(ids)) == 30


async def test_a_request_error_carries_the_servers_code(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    async with VStudioClient(live_server.base_url, live_server.token("v2")) as client:
        async with client.live(session["id"], backoff=QUICK) as live:
            with pytest.raises(ApiError) as caught:
                await live.request("session.end", {})
    assert caught.value.code == 4004


async def test_an_ended_session_stops_reconnecting(live_server: LiveServer) -> None:
    artist = "artist-end-test"
    session = await live_server.live_session(artist)
    async with VStudioClient(live_server.base_url, live_server.token("v3")) as client:
        live = client.live(session["id"], backoff=QUICK)
        async with live:
            await live.wait_for("session.state")
            status, _ = await live_server.call(
                "POST",
                f"/v1/vstudio/sessions/{session['id']}/end",
                token=live_server.token(artist, "artist"),
            )
            assert status == 200
            await _until(lambda: live.state == "closed", timeout=10)
            assert live.closed_reason == "session ended"


async def _until(condition: Any, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)
