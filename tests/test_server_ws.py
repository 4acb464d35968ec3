"""The WebSocket endpoint against a real server process, real clients and real Redis."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import orjson
import pytest
from conftest import LiveServer

from broker import Bus
from broker.models import ErrorCode


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def receive_type(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5) -> dict:
    """The next frame of type ``kind`` (skipping others, e.g. presence)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            frame = orjson.loads(message.data)
            if frame["type"] == kind:
                return frame


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> int | None:
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code


async def test_first_frame_is_session_state_then_bus_events(
    live_server: LiveServer, bus: Bus
) -> None:
    session = await live_server.live_session()
    async with live_server.ws(session["id"], user()) as ws:
        state = await ws.receive_json(timeout=5)
        assert state["type"] == "session.state"
        assert state["payload"]["session"]["id"] == session["id"]
        assert state["payload"]["viewerCount"] == 1
        event_id = await bus.publish(session["id"], "events", "tip.received", {"amount": 5})
        frame = await receive_type(ws, "tip.received")
        assert frame["id"] == event_id and frame["payload"] == {"amount": 5}


async def test_chat_is_coalesced_into_aggregates_in_order(
    live_server: LiveServer, bus: Bus
) -> None:
    session = await live_server.live_session()
    async with live_server.ws(session["id"], user()) as ws:
        await receive_type(ws, "session.state")
        from broker.bus import OutgoingEvent

        events = [
            OutgoingEvent("chat.message", {"id": f"twitch:{n}", "text": str(n)}, f"twitch:{n}")
            for n in range(30)
        ]
        ids = await bus.publish_many(session["id"], "chat", events)
        seen: list[str] = []
        frames = 0
        while len(seen) < 30:
            frame = await receive_type(ws, "chat.aggregate")
            frames += 1
            seen += [message["id"] for message in frame["payload"]["messages"]]
            assert frame["id"] == ids[len(seen) - 1]
        assert seen == [f"twitch:{n}" for n in range(30)]
        assert frames < 30


@pytest.mark.parametrize("ticket", ["nonsense", ""])
async def test_bad_ticket_closes_4000(live_server: LiveServer, ticket: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{live_server.ws_url}?ticket={ticket}") as ws,
    ):
        assert await closed_with(ws) == ErrorCode.INVALID_TICKET


async def test_ticket_is_single_use(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    ticket = await live_server.ticket(live_server.token(user()), session["id"])
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{live_server.ws_url}?ticket={ticket}") as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "session.state"
        async with http.ws_connect(f"{live_server.ws_url}?ticket={ticket}") as ws:
            assert await closed_with(ws) == ErrorCode.INVALID_TICKET


async def test_invalid_frame_gets_4006_with_request_id(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    async with live_server.ws(session["id"], user()) as ws:
        await receive_type(ws, "session.state")
        await ws.send_str('{"type": "poll.vote", "requestId": "r1", "payload": {"option": 1}}')
        error = await receive_type(ws, "error")
        assert error["requestId"] == "r1"
        assert error["payload"]["code"] == ErrorCode.INVALID_MESSAGE
        assert "pollId" in error["payload"]["message"]
        await ws.send_str("not json")
        error = await receive_type(ws, "error")
        assert error["payload"]["code"] == ErrorCode.INVALID_MESSAGE
        await ws.send_json({"type": "ping", "requestId": "p"})
        pong = await receive_type(ws, "pong")
        assert pong["requestId"] == "p"
