"""The console's sources panel (issue 15): a real server, real Redis, the worker's records
written as workers write them, and the console read through the server's REST route."""

from __future__ import annotations

import asyncio
import uuid

from broker import keys
from broker.connection import connect
from tests.support.fleet_records import write_worker
from tests.support.types import ServerFactory
from vstudio_cli.client import VStudioClient
from vstudio_cli.console.app import ConsoleApp
from vstudio_cli.console.link import SessionLink
from vstudio_cli.console.widgets.sources import SourcesPanel, sources_text


def test_the_lines_say_owners_wanted_and_state() -> None:
    text = sources_text(
        [
            {"id": "twitch:a", "owners": ["w1", "w2"], "redundancy": 2, "state": "connected",
             "msgPerS": 5.04},
            {"id": "twitch:b", "owners": ["w1"], "redundancy": 2, "state": "connected"},
            {"id": "tiktok:c", "owners": [], "redundancy": None, "state": "unclaimed"},
        ]
    )  # fmt: skip
    lines = text.plain.splitlines()
    assert lines == [
        "twitch:a 2/2 connected 5.0/s",
        "twitch:b 1/2 connected",
        "tiktok:c 0/1 unclaimed",
    ]
    styles = {text.plain[span.start : span.end]: str(span.style) for span in text.spans}
    assert styles[" 0/1 unclaimed"] == "bold red" and styles[" 1/2 connected"] == "yellow"
    assert styles[" 2/2 connected"] == "green"


async def test_the_producer_sees_the_sessions_sources_and_who_reads_them(
    server_factory: ServerFactory, redis_url: str
) -> None:
    fleet = f"t{uuid.uuid4().hex[:10]}"
    server = server_factory(VSTUDIO_FLEET=fleet)
    artist, producer = f"artist-{uuid.uuid4().hex[:6]}", f"producer-{uuid.uuid4().hex[:6]}"
    session = await server.live_session(artist, producerIds=[producer])
    sid = session["id"]
    token = server.token(artist, "artist")
    for target in ("band", "other"):
        status, _ = await server.call(
            "POST", f"/v1/vstudio/sessions/{sid}/sources", token=token,
            json={"platform": "twitch", "target": target},
        )  # fmt: skip
        assert status == 201
    redis = await connect(redis_url)
    await write_worker(redis, fleet, "w1", {"twitch:band": "connected"}, sessions=[sid])
    client = VStudioClient(server.base_url, server.token(producer, "producer"))
    app = ConsoleApp(SessionLink(client, sid))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            panel = app.query_one(SourcesPanel)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not app.state.sources and loop.time() < deadline:
                await pilot.pause(0.05)
            await pilot.pause(0.1)
            assert panel.display
            shown = str(panel.render())
            assert "twitch:band 1/1 connected" in shown
            assert "twitch:other 0/1 unclaimed" in shown
            assert panel.border_title == "Sources (1 unread)"
    finally:
        await client.close()
        await redis.delete(keys.fleet_workers(fleet), keys.fleet_health(fleet))
        await redis.aclose()
