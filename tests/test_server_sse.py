"""SSE and the REST actions SSE clients use, against a real server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from broker import Bus, connect
from broker.bus import OutgoingEvent
from broker.models import ErrorCode
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory


class SseReader:
    """A minimal EventSource: parses ``event``/``id``/``data`` blocks from a response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments = 0

    async def next(self, timeout: float = 5) -> dict:
        event: dict = {"data": []}
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("stream ended")
                line = raw.decode().rstrip("\n")
                if line == "":
                    if event["data"] or "event" in event:
                        event["data"] = orjson.loads("\n".join(event["data"]))
                        return event
                    event = {"data": []}
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(": ")
                if name == "data":
                    event["data"].append(value)
                else:
                    event[name] = value

    async def next_of(self, kind: str, timeout: float = 5) -> dict:
        while True:
            event = await self.next(timeout)
            if event.get("event") == kind:
                return event


@contextlib.asynccontextmanager
async def sse(
    server: LiveServer, session_id: str, query: str = "", headers: dict | None = None
) -> AsyncIterator[SseReader]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.base_url}/v1/vstudio/sse/{session_id}{query}", headers=headers or {}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        yield SseReader(response)


async def test_sse_streams_state_then_events_with_ids(live_server: LiveServer, bus: Bus) -> None:
    session = await live_server.live_session()
    sid = session["id"]
    token = live_server.token("sse-1")
    async with sse(live_server, sid, f"?token={token}") as reader:
        state = await reader.next_of("session.state")
        assert state["data"]["session"]["id"] == sid and state["data"]["viewerCount"] == 1
        event_id = await bus.publish(sid, "events", "tip.received", {"amount": 3})
        tip = await reader.next_of("tip.received")
        assert tip["id"] == event_id and tip["data"] == {"amount": 3}
        chat = [OutgoingEvent("chat.message", {"id": f"twitch:s{n}"}) for n in range(5)]
        ids = await bus.publish_many(sid, "chat", chat)
        aggregate = await reader.next_of("chat.aggregate")
        assert aggregate["id"] == ids[-1]
        assert [m["id"] for m in aggregate["data"]["messages"]] == [
            f"twitch:s{n}" for n in range(5)
        ]


async def test_sse_auth_by_header_and_ticket_and_refusals(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    sid = session["id"]
    headers = {"Authorization": f"Bearer {live_server.token('hdr')}"}
    async with sse(live_server, sid, headers=headers) as reader:
        assert (await reader.next_of("session.state"))["data"]["session"]["id"] == sid
    ticket = await live_server.ticket(live_server.token("tick"), sid)
    async with sse(live_server, sid, f"?ticket={ticket}") as reader:
        await reader.next_of("session.state")
    status, body = await live_server.call("GET", f"/v1/vstudio/sse/{sid}?ticket={ticket}")
    assert status == 401 and body["code"] == ErrorCode.INVALID_TICKET
    status, body = await live_server.call("GET", f"/v1/vstudio/sse/{sid}")
    assert status == 401, body
    status, body = await live_server.call(
        "GET", f"/v1/vstudio/sse/nosuch?token={live_server.token('x')}"
    )
    assert status == 404 and body["code"] == ErrorCode.SESSION_NOT_FOUND


async def test_sse_resumes_by_last_event_id_without_gaps(live_server: LiveServer, bus: Bus) -> None:
    session = await live_server.live_session()
    sid = session["id"]
    token = live_server.token("resumer")
    async with sse(live_server, sid, f"?token={token}") as reader:
        await reader.next_of("session.state")
        first = await bus.publish(sid, "events", "tip.received", {"n": 0})
        assert (await reader.next_of("tip.received"))["id"] == first
    missed = [await bus.publish(sid, "events", "tip.received", {"n": n}) for n in range(1, 4)]
    headers = {"Last-Event-ID": first}
    async with sse(live_server, sid, f"?token={token}", headers) as reader:
        state = await reader.next_of("session.state")
        assert state["data"]["recovered"] is True
        got = [await reader.next_of("tip.received") for _ in range(3)]
        assert [event["id"] for event in got] == missed
        live = await bus.publish(sid, "events", "tip.received", {"n": 4})
        assert (await reader.next_of("tip.received"))["id"] == live
    async with sse(live_server, sid, f"?token={token}&lastEventId={missed[1]}") as reader:
        await reader.next_of("session.state")
        assert (await reader.next_of("tip.received"))["id"] == missed[2]


async def test_sse_outside_the_window_starts_with_state(
    live_server: LiveServer, redis_url: str
) -> None:
    session = await live_server.live_session()
    sid = session["id"]
    client = await connect(redis_url)
    try:
        small = Bus(client, history_size=10)
        old = await small.publish(sid, "events", "tip.received", {"n": -1})
        for _ in range(6):
            await small.publish_many(
                sid, "events", [OutgoingEvent("tip.received", {"n": n}) for n in range(100)]
            )
    finally:
        await client.aclose()
    token = live_server.token("old")
    async with sse(live_server, sid, f"?token={token}", {"Last-Event-ID": old}) as reader:
        state = await reader.next()
        assert state["event"] == "session.state" and state["data"]["recovered"] is False
        with pytest.raises(TimeoutError):
            await reader.next_of("tip.received", timeout=0.5)


@pytest.mark.slow
async def test_sse_keepalive_and_end_of_session(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_SSE_KEEPALIVE="0.2")
    session = await server.live_session()
    sid = session["id"]
    async with sse(server, sid, f"?token={server.token('k')}") as reader:
        await reader.next_of("session.state")
        await asyncio.sleep(0.7)
        artist = server.token(session["artistId"], "artist")
        status, _ = await server.call("POST", f"/v1/vstudio/sessions/{sid}/end", token=artist)
        assert status == 200
        end = await reader.next_of("session.end")
        assert reader.comments >= 2
        assert end["data"]["endedBy"] == session["artistId"]
        with pytest.raises(EOFError):
            await reader.next(timeout=5)


async def test_rest_actions_share_rules_limits_and_codes(
    server_factory: ServerFactory, bus: Bus
) -> None:
    server = server_factory(VSTUDIO_CHAT_RATE_LIMIT="2", VSTUDIO_CHAT_RATE_WINDOW="30")
    session = await server.live_session()
    sid = session["id"]
    fan = server.token(f"fan-{uuid.uuid4().hex[:6]}")
    base = f"/v1/vstudio/sessions/{sid}"
    async with sse(server, sid, f"?token={fan}") as reader:
        await reader.next_of("session.state")
        for _ in range(2):
            status, body = await server.call("POST", f"{base}/chat", token=fan, json={"text": "hi"})
            assert status == 200, body
        aggregate = await reader.next_of("chat.aggregate")
        assert aggregate["data"]["messages"][0]["text"] == "hi"
    status, body = await server.call("POST", f"{base}/chat", token=fan, json={"text": "hi"})
    assert status == 429 and body["code"] == ErrorCode.RATE_LIMITED
    assert body["retryAfter"] > 0
    status, body = await server.call("POST", f"{base}/chat", token=fan, json={"text": ""})
    assert status == 400 and body["code"] == ErrorCode.INVALID_MESSAGE
    status, body = await server.call("POST", f"{base}/polls", token=fan, json={"question": "q"})
    assert status in (400, 403), body
    status, body = await server.call(
        "POST",
        f"{base}/polls",
        token=fan,
        json={"question": "q?", "options": ["a", "b"]},
    )
    assert status == 403 and body["code"] == ErrorCode.FORBIDDEN
    status, body = await server.call(
        "POST", f"{base}/reactions", token=fan, json={"emoji": "x" * 40}
    )
    assert status == 400, body
    status, body = await server.call(
        "POST", f"{base}/chat", token=fan, data=b"x" * 10_000, headers={}
    )
    assert status == 413 and body["code"] == ErrorCode.MESSAGE_TOO_LARGE
    status, body = await server.call(
        "POST", "/v1/vstudio/sessions/nosuch/chat", token=fan, json={"text": "a"}
    )
    assert status == 404, body
    status, body = await server.call("POST", f"{base}/chat", json={"text": "a"})
    assert status == 401, body


async def test_idempotency_key_records_a_rest_tip_once(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    base = f"/v1/vstudio/sessions/{session['id']}"
    fan = live_server.token(f"tipper-{uuid.uuid4().hex[:6]}")
    tip = {"amount": 5, "currency": "USD"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    status, first = await live_server.call("POST", f"{base}/tips", token=fan, json=tip, headers=key)
    assert status == 200, first
    status, again = await live_server.call("POST", f"{base}/tips", token=fan, json=tip, headers=key)
    assert status == 200 and again["duplicate"] is True
    assert again["tip"]["tipId"] == first["tip"]["tipId"]


async def test_an_sse_viewer_counts_like_a_websocket_viewer(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    sid = session["id"]
    async with sse(live_server, sid, f"?token={live_server.token('count-sse')}") as reader:
        await reader.next_of("session.state")
        async with live_server.ws(sid, "count-ws") as ws:
            state = await ws.receive_json(timeout=5)
            assert state["payload"]["viewerCount"] == 2
            join = await reader.next_of("session.join")
            while join["data"]["userId"] != "count-ws":  # its own join comes first
                join = await reader.next_of("session.join")
            assert join["data"]["viewerCount"] == 2
    await asyncio.sleep(0.3)
    _, body = await live_server.call("GET", f"/v1/vstudio/sessions/{sid}")
    assert body["viewerCount"] == 0
