"""The WebSocket endpoint against a real server process, real clients and real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid

import aiohttp
import orjson
import pytest

from broker import Bus
from broker.models import ErrorCode
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory
from tests.support.websocket import closed_with, receive_type


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


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


SEED_STATE_KEYS = [
    "sessionId",
    "status",
    "viewerCount",
    "activePoll",
    "chatEnabled",
    "reactionsEnabled",
]
"""The seed's ``session.state`` payload fields, in the seed's order, at the top."""


async def test_session_state_carries_the_seeds_fields_at_the_top(live_server: LiveServer) -> None:
    artist = user()
    session = await live_server.live_session(artist)
    token = live_server.token(artist, "artist")
    base = f"/v1/vstudio/sessions/{session['id']}"
    async with live_server.ws(session["id"], user()) as ws:
        state = (await receive_type(ws, "session.state"))["payload"]
        assert list(state)[: len(SEED_STATE_KEYS)] == SEED_STATE_KEYS
        assert state["sessionId"] == session["id"] and state["status"] == "live"
        assert state["activePoll"] is None and state["viewerCount"] == 1
        assert state["chatEnabled"] is True and state["reactionsEnabled"] is True
        assert state["session"]["id"] == session["id"]  # the full record follows
    # chat off, reactions on: a swapped pair of fields would show
    status, _ = await live_server.call("PATCH", base, token=token, json={"chatEnabled": False})
    assert status == 200
    poll_body = {"question": "Which song next?", "options": ["Track A", "Track B"], "duration": 60}
    status, poll = await live_server.call("POST", f"{base}/polls", token=token, json=poll_body)
    assert status == 200, poll
    fan = user()
    status, _ = await live_server.call(
        "POST",
        f"{base}/polls/{poll['id']}/votes",
        token=live_server.token(fan),
        json={"optionIndex": 1},
    )
    assert status == 200
    async with live_server.ws(session["id"], fan) as ws:
        state = (await receive_type(ws, "session.state"))["payload"]
        assert state["chatEnabled"] is False and state["reactionsEnabled"] is True
        active = state["activePoll"]
        assert list(active)[:5] == ["id", "question", "options", "results", "endsAt"]
        assert active["id"] == poll["id"]
        assert active["options"] == ["Track A", "Track B"] and active["results"] == [0, 1]
        assert active["endsAt"] == poll["endsAt"]


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
        await ws.send_str('{"type": "poll.vote", "requestId": "r1", "payload": {"optionIndex": 1}}')
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


async def ws_with_ticket(
    server: LiveServer, ticket: str, path: str = "", query: str = ""
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"{server.ws_url}{path}?ticket={ticket}{query}")
    return http, ws


async def test_session_not_found_and_ended_close_4001_4002(
    live_server: LiveServer, bus: Bus
) -> None:
    from broker import keys

    session = await live_server.live_session()
    gone = await live_server.ticket(live_server.token(user()), session["id"])
    ended = await live_server.ticket(live_server.token(user()), session["id"])
    await bus.redis.rename(keys.session(session["id"]), keys.session(session["id"]) + ":moved")
    http, ws = await ws_with_ticket(live_server, gone)
    async with http, ws:
        assert await closed_with(ws) == ErrorCode.SESSION_NOT_FOUND
    await bus.redis.rename(keys.session(session["id"]) + ":moved", keys.session(session["id"]))
    artist = live_server.token(session["artistId"], "artist")
    status, _ = await live_server.call(
        "POST", f"/v1/vstudio/sessions/{session['id']}/end", token=artist
    )
    assert status == 200
    http, ws = await ws_with_ticket(live_server, ended)
    async with http, ws:
        assert await closed_with(ws) == ErrorCode.SESSION_ENDED
    status, body = await live_server.call(
        "POST",
        "/v1/vstudio/ticket",
        token=live_server.token(user()),
        json={"sessionId": session["id"]},
    )
    assert status == 409 and body["code"] == ErrorCode.SESSION_ENDED


async def test_ticket_for_another_session_in_the_path_is_4000(live_server: LiveServer) -> None:
    first = await live_server.live_session()
    second = await live_server.live_session()
    ticket = await live_server.ticket(live_server.token(user()), first["id"])
    http, ws = await ws_with_ticket(live_server, ticket, path=f"/{second['id']}")
    async with http, ws:
        assert await closed_with(ws) == ErrorCode.INVALID_TICKET


async def test_role_query_parameter_gains_nothing(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    ticket = await live_server.ticket(live_server.token(user(), "artist"), session["id"])
    http, ws = await ws_with_ticket(live_server, ticket, query="&role=artist")
    async with http, ws:
        await receive_type(ws, "session.state")
        await ws.send_json({"type": "session.end", "requestId": "end", "payload": {}})
        error = await receive_type(ws, "error")
        assert error["requestId"] == "end"
        assert error["payload"]["code"] == ErrorCode.FORBIDDEN
        assert "you are viewer" in error["payload"]["message"]


async def test_ticket_roles_are_checked_against_the_session(live_server: LiveServer) -> None:
    session = await live_server.live_session(producerIds=["prod-1"])
    cases = [
        ("someone", "artist", 403, ErrorCode.FORBIDDEN),
        ("someone", "producer", 403, ErrorCode.FORBIDDEN),
        ("someone", "token_holder", 403, ErrorCode.TOKEN_GATE_FAILED),
        ("prod-1", "producer", 200, None),
        (session["artistId"], "artist", 200, None),
    ]
    for who, role, status_expected, code in cases:
        status, body = await live_server.call(
            "POST",
            "/v1/vstudio/ticket",
            token=live_server.token(who),
            json={"sessionId": session["id"], "role": role},
        )
        assert status == status_expected, (who, role, body)
        if code:
            assert body["code"] == code
        if code == ErrorCode.TOKEN_GATE_FAILED:
            assert "requires no tokens" in body["message"]


@pytest.mark.slow
async def test_expired_ticket_is_4000(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_TICKET_TTL="1")
    session = await server.live_session()
    ticket = await server.ticket(server.token(user()), session["id"])
    await asyncio.sleep(1.6)
    http, ws = await ws_with_ticket(server, ticket)
    async with http, ws:
        assert await closed_with(ws) == ErrorCode.INVALID_TICKET


async def test_frame_over_the_limit_is_4007_and_closes(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    async with live_server.ws(session["id"], user()) as ws:
        await receive_type(ws, "session.state")
        big = {"type": "chat.message", "payload": {"text": "x" * 5000}}
        await ws.send_str(orjson.dumps(big).decode())
        error = await receive_type(ws, "error")
        assert error["payload"]["code"] == ErrorCode.MESSAGE_TOO_LARGE
        assert await closed_with(ws) == ErrorCode.MESSAGE_TOO_LARGE


async def test_session_full_is_4008_counting_distinct_users(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_MAX_VIEWERS="2")
    session = await server.live_session()
    async with server.ws(session["id"], "a") as a, server.ws(session["id"], "b") as b:
        await receive_type(a, "session.state")
        await receive_type(b, "session.state")
        async with server.ws(session["id"], "a") as a_again:  # same user: not a new viewer
            state = await receive_type(a_again, "session.state")
            assert state["payload"]["viewerCount"] == 2
        async with server.ws(session["id"], "c") as c:
            assert await closed_with(c) == ErrorCode.SESSION_FULL
    await asyncio.sleep(0.2)
    async with server.ws(session["id"], "c") as c:
        assert (await receive_type(c, "session.state"))["payload"]["viewerCount"] == 1


@pytest.mark.slow
async def test_rate_limits_with_shrunk_windows(server_factory: ServerFactory) -> None:
    server = server_factory(
        VSTUDIO_CHAT_RATE_LIMIT="2",
        VSTUDIO_CHAT_RATE_WINDOW="1.0",
        VSTUDIO_MESSAGE_RATE_LIMIT="4",
        VSTUDIO_MESSAGE_RATE_WINDOW="2.0",
    )
    session = await server.live_session()
    async with server.ws(session["id"], user()) as ws:
        await receive_type(ws, "session.state")
        replies = []
        for n in range(3):
            await ws.send_json(
                {"type": "chat.message", "requestId": f"c{n}", "payload": {"text": "hi"}}
            )
            replies.append(await _reply(ws, f"c{n}"))
        assert [r["type"] for r in replies] == ["chat.message", "chat.message", "error"]
        assert replies[2]["payload"]["code"] == ErrorCode.RATE_LIMITED
        assert 0 < replies[2]["payload"]["retryAfter"] <= 1.0
        await asyncio.sleep(replies[2]["payload"]["retryAfter"] + 0.05)
        await ws.send_json({"type": "chat.message", "requestId": "c3", "payload": {"text": "hi"}})
        assert (await _reply(ws, "c3"))["type"] == "chat.message"
        await ws.send_json({"type": "session.join", "requestId": "j1", "payload": {}})
        assert (await _reply(ws, "j1"))["type"] == "session.join"  # 4th of 'any'
        await ws.send_json({"type": "session.join", "requestId": "j2", "payload": {}})
        over = await _reply(ws, "j2")
        assert over["type"] == "error" and over["payload"]["code"] == ErrorCode.RATE_LIMITED
        await ws.send_json({"type": "ping", "requestId": "p"})  # pings are never limited
        assert (await _reply(ws, "p"))["type"] == "pong"


async def _reply(ws: aiohttp.ClientWebSocketResponse, request_id: str) -> dict:
    async with asyncio.timeout(5):
        while True:
            frame = orjson.loads((await ws.receive()).data)
            if frame.get("requestId") == request_id:
                return frame


@pytest.mark.slow
async def test_heartbeat_drops_a_silent_client_and_keeps_a_live_one(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(
        VSTUDIO_HEARTBEAT_INTERVAL="0.3",
        VSTUDIO_HEARTBEAT_TIMEOUT="0.2",
        VSTUDIO_HEARTBEAT_MAX_MISSED="2",
    )
    session = await server.live_session()
    async with (
        server.ws(session["id"], "silent", autoping=False) as silent,
        server.ws(session["id"], "alive") as alive,
    ):
        await receive_type(silent, "session.state")
        await receive_type(alive, "session.state")
        frames: list[dict] = []

        async def keep_reading() -> None:  # aiohttp answers pings while it reads
            async for message in alive:
                frames.append(orjson.loads(message.data))

        reader = asyncio.create_task(keep_reading())
        started = asyncio.get_running_loop().time()
        pings = 0
        async with asyncio.timeout(5):
            while True:  # read (so the socket is drained) but never answer pings
                message = await silent.receive()
                if message.type == aiohttp.WSMsgType.PING:
                    pings += 1
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
        assert pings >= 2 and silent.close_code == 1001
        assert asyncio.get_running_loop().time() - started < 2.0
        await asyncio.sleep(1.0)  # several more heartbeats
        await alive.send_json({"type": "ping", "requestId": "still"})
        async with asyncio.timeout(5):
            while not any(frame.get("requestId") == "still" for frame in frames):
                await asyncio.sleep(0.02)
        assert not alive.closed
        reader.cancel()


@pytest.mark.slow
async def test_heartbeat_pings_in_parts_spread_over_half_the_interval(
    server_factory: ServerFactory,
) -> None:
    """10,000 pings written in one loop turn (and 10,000 pongs read back at once) held every
    fan-out frame of that moment; the parts go out over half the interval instead."""
    server = server_factory(
        VSTUDIO_HEARTBEAT_INTERVAL="1.2",
        VSTUDIO_HEARTBEAT_TIMEOUT="0.5",
        VSTUDIO_HEARTBEAT_MAX_MISSED="2",
        VSTUDIO_HEARTBEAT_PART="2",
    )
    session = await server.live_session()
    pinged: dict[str, list[float]] = {}
    loop = asyncio.get_running_loop()

    async def answer(name: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:  # autoping off: note each ping, then answer it
            if message.type == aiohttp.WSMsgType.PING:
                pinged.setdefault(name, []).append(loop.time())
                await ws.pong(message.data)

    async with contextlib.AsyncExitStack() as stack:
        names = [f"fan{n}" for n in range(6)]
        sockets = [
            await stack.enter_async_context(server.ws(session["id"], name, autoping=False))
            for name in names
        ]
        for ws in sockets:
            await receive_type(ws, "session.state")
        readers = [asyncio.create_task(answer(n, ws)) for n, ws in zip(names, sockets, strict=True)]
        await asyncio.sleep(4.0)  # three rounds
        for reader in readers:
            reader.cancel()
        assert all(not ws.closed for ws in sockets), "a client that answered was dropped"
    assert set(pinged) == set(names)
    first = sorted(times[0] for times in pinged.values())
    # three parts of two, about 0.2 s apart: the round's pings spread over ~0.4 s, not 0
    assert first[-1] - first[0] > 0.25
    for times in pinged.values():  # each client once a round, a round per interval
        assert 2 <= len(times) <= 4
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(0.9 < gap < 1.5 for gap in gaps), gaps


async def test_the_first_client_refused_as_full_leaves_the_server_healthy(
    server_factory: ServerFactory,
) -> None:
    one = server_factory(VSTUDIO_MAX_VIEWERS="1")
    two = server_factory(VSTUDIO_MAX_VIEWERS="1")
    session = await one.live_session()
    async with one.ws(session["id"], "holder") as holder:
        await receive_type(holder, "session.state")
        async with two.ws(session["id"], "x") as refused:  # two has no client of it yet
            assert await closed_with(refused) == ErrorCode.SESSION_FULL
    await asyncio.sleep(0.3)
    async with two.ws(session["id"], "z") as z:
        assert (await receive_type(z, "session.state"))["payload"]["viewerCount"] == 1
    assert "Traceback" not in two.log, two.log


async def test_the_seeds_session_join_is_checked_against_the_ticket(
    live_server: LiveServer,
) -> None:
    session = await live_server.live_session()
    fan = user()
    async with live_server.ws(session["id"], fan) as ws:
        await receive_type(ws, "session.state")
        mine = {"sessionId": session["id"], "role": "viewer", "userId": fan}
        await ws.send_json({"type": "session.join", "requestId": "ok", "payload": mine})
        reply = await _reply(ws, "ok")
        assert reply["type"] == "session.join", reply
        assert reply["payload"]["userId"] == fan and reply["payload"]["role"] == "viewer"
        wrong = {
            "userId": {**mine, "userId": "user_456"},
            "role": {**mine, "role": "artist"},
            "sessionId": {**mine, "sessionId": "abc123"},
        }
        for field, payload in wrong.items():
            await ws.send_json({"type": "session.join", "requestId": field, "payload": payload})
            error = await _reply(ws, field)
            assert error["type"] == "error", (field, error)
            assert error["payload"]["code"] == ErrorCode.FORBIDDEN
            assert field in error["payload"]["message"]
        # the connection stays what its ticket made it
        await ws.send_json({"type": "session.join", "requestId": "again", "payload": mine})
        assert (await _reply(ws, "again"))["type"] == "session.join"
