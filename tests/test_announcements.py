"""``vstudio:global:announcements`` is live: every client of every session on every process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import aiohttp
import pytest

from broker.connection import is_cluster
from server.identity.auth import mint_token
from tests.support.cluster import plain_async_client
from tests.support.live_server import LiveServer
from tests.support.websocket import frames_for


def notices(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [frame for frame in frames if frame["type"] == "announcement"]


def operator_token(server: LiveServer) -> str:
    return mint_token(server.secret, user_id="ops", role="viewer", extra={"operator": True})


CHANNEL = "vstudio:global:announcements"


@pytest.fixture
def two_servers(server_factory: Any) -> tuple[LiveServer, LiveServer]:
    return server_factory(), server_factory()


async def test_raw_global_publish_reaches_every_session_on_every_process(
    two_servers: tuple[LiveServer, LiveServer], redis_url: str
) -> None:
    one, two = two_servers
    first = (await one.live_session())["id"]
    second = (await two.live_session())["id"]
    client = plain_async_client(redis_url)
    token = one.token("sse-fan")
    try:
        async with (
            one.ws(first, "fan-a") as a,
            two.ws(second, "fan-b") as b,
            aiohttp.ClientSession() as http,
            http.get(f"{two.base_url}/v1/vstudio/sse/{first}?token={token}") as sse,
        ):
            await a.receive_json(timeout=5)
            await b.receive_json(timeout=5)
            await sse.content.readline()
            body = {"type": "announcement", "payload": {"text": "maintenance at 17:00"}}
            where = {}
            if is_cluster(client):  # a cluster counts one node's subscribers: the slot's owner
                await client.initialize()
                where = {"target_nodes": client.get_node_from_key(CHANNEL)}
            assert await client.publish(CHANNEL, json.dumps(body), **where) >= 2
            await client.publish("vstudio:global:announcements", b"plain words work too")
            seen_a, seen_b = await asyncio.gather(frames_for(a, 1.0), frames_for(b, 1.0))
            sse_text = ""
            async with asyncio.timeout(5):
                while "plain words" not in sse_text:
                    sse_text += (await sse.content.readline()).decode()
    finally:
        await client.aclose()
    for seen in (seen_a, seen_b):
        assert [n["payload"]["text"] for n in notices(seen)] == [
            "maintenance at 17:00",
            "plain words work too",
        ], seen
    assert "event: announcement" in sse_text and "maintenance at 17:00" in sse_text


async def test_rest_announcements_need_the_right_caller(
    two_servers: tuple[LiveServer, LiveServer],
) -> None:
    one, two = two_servers
    artist = f"artist-{uuid.uuid4().hex[:6]}"
    mine = (await one.live_session(artist))["id"]
    other = (await two.live_session())["id"]
    path = "/v1/vstudio/announcements"
    async with one.ws(mine, "fan-a") as a, two.ws(other, "fan-b") as b:
        await a.receive_json(timeout=5)
        await b.receive_json(timeout=5)
        status, _ = await one.call("POST", path, json={"text": "x"})
        assert status == 401
        viewer = one.token("someone")
        status, body = await one.call("POST", path, token=viewer, json={"text": "x"})
        assert status == 403, body
        status, body = await one.call(
            "POST", path, token=viewer, json={"text": "x", "sessionId": mine}
        )
        assert status == 403, body
        artist_token = one.token(artist, "artist")
        status, body = await one.call("POST", path, token=artist_token, json={"text": "all"})
        assert status == 403, body  # an artist may not announce to every session
        status, body = await one.call(
            "POST", path, token=artist_token, json={"text": "encore soon", "sessionId": mine}
        )
        assert status == 200 and body["id"], body
        status, body = await two.call(
            "POST", path, token=operator_token(two), json={"text": "hello everyone"}
        )
        assert status == 200 and body["processes"] >= 2, body
        seen_a, seen_b = await asyncio.gather(frames_for(a, 1.0), frames_for(b, 1.0))
    assert [(n["payload"]["text"], bool(n.get("id"))) for n in notices(seen_a)] == [
        ("encore soon", True),
        ("hello everyone", False),
    ], seen_a
    assert notices(seen_a)[0]["payload"]["sessionId"] == mine
    assert [n["payload"]["text"] for n in notices(seen_b)] == ["hello everyone"], seen_b
    status, body = await one.call(
        "POST", path, token=operator_token(one), json={"text": "x", "sessionId": "nosuch"}
    )
    assert status == 404, body


async def test_cli_announce(two_servers: tuple[LiveServer, LiveServer], tmp_path: Any) -> None:
    one, two = two_servers
    sid = (await two.live_session())["id"]
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "VSTUDIO_TOKEN": operator_token(one)}
    async with two.ws(sid, "fan") as ws:
        await ws.receive_json(timeout=5)
        command = [sys.executable, "-m", "vstudio_cli.main", "announce", "from the CLI"]
        command += ["--server", one.base_url, "--json"]
        done = await asyncio.to_thread(
            subprocess.run, command, env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["announcement"]["text"] == "from the CLI"
        viewer = {**env, "VSTUDIO_TOKEN": one.token("nobody")}
        refused = await asyncio.to_thread(
            subprocess.run, command, env=viewer, capture_output=True, text=True, timeout=30
        )
        assert refused.returncode == 7, refused.stderr  # forbidden
        seen = await frames_for(ws, 1.0)
    assert [n["payload"]["text"] for n in notices(seen)] == ["from the CLI"]


def test_token_mint_operator(tmp_path: Any) -> None:
    env = {**os.environ, "VSTUDIO_JWT_SECRET": "s" * 40, "VSTUDIO_DATA_DIR": str(tmp_path)}
    env.pop("VSTUDIO_CONFIG", None)
    command = [sys.executable, "-m", "vstudio_cli.main", "token", "mint", "--user", "ops"]
    token = subprocess.run(
        [*command, "--operator"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    import jwt

    assert jwt.decode(token, options={"verify_signature": False})["operator"] is True
