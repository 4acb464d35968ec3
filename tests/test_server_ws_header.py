"""The seed's "Authorization Header" method on the WebSocket, and which close code comes when.

A non-browser client may skip the ticket: ``Authorization: Bearer <jwt>`` on the upgrade with
``?sessionId=&role=`` (or ``/v1/vstudio/ws/{sessionId}?role=``). The role is granted by the
same rule as a ticket request. The checks run in one order, for both methods: the credentials
(4000), then the session the URL names (4001), then whether a ticket is for it (4000), then the
session's state and the role (4002, 4004, 4005).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson

from broker.models import ErrorCode
from tests.support.live_server import LiveServer


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def header_ws(
    server: LiveServer, token: str, path: str = "", **query: str
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A WebSocket opened with ``Authorization: Bearer token`` and no ticket."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{server.ws_url}{path}", params=query, headers=headers) as ws,
    ):
        yield ws


async def next_frame(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict:
    async with asyncio.timeout(5):
        while True:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, (message, ws.close_code)
            frame = orjson.loads(message.data)
            if frame["type"] == kind:
                return frame


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    async with asyncio.timeout(5):
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code


async def role_of(ws: aiohttp.ClientWebSocketResponse) -> str:
    """The connection's role, as the server sees it: ask for a poll and read the answer."""
    poll = {"question": "Which?", "options": ["A", "B"]}
    await ws.send_json({"type": "poll.create", "requestId": "who", "payload": poll})
    async with asyncio.timeout(5):
        while True:
            frame = orjson.loads((await ws.receive()).data)
            if frame.get("requestId") != "who":
                continue
            if frame["type"] == "error":
                assert frame["payload"]["code"] == ErrorCode.FORBIDDEN, frame
                return frame["payload"]["message"].split("you are ", 1)[1].split()[0].strip(".;,")
            return "artist or producer"


async def test_bearer_header_with_session_and_role_in_the_query(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    artist = live_server.token(session["artistId"], "artist")
    async with header_ws(live_server, artist, sessionId=session["id"], role="artist") as ws:
        await next_frame(ws, "session.state")
        assert await role_of(ws) == "artist or producer"


async def test_bearer_header_with_the_session_in_the_path(live_server: LiveServer) -> None:
    session = await live_server.live_session(producerIds=["prod-h"])
    producer = live_server.token("prod-h")
    async with header_ws(live_server, producer, f"/{session['id']}", role="producer") as ws:
        await next_frame(ws, "session.state")
        assert await role_of(ws) == "artist or producer"


async def test_no_role_means_viewer_even_for_the_artist(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    artist = live_server.token(session["artistId"], "artist")
    async with header_ws(live_server, artist, sessionId=session["id"]) as ws:
        await next_frame(ws, "session.state")
        assert await role_of(ws) == "viewer"


async def test_roles_are_granted_as_for_a_ticket(live_server: LiveServer) -> None:
    session = await live_server.live_session(producerIds=["prod-2"])
    cases = [
        ("someone", "artist", ErrorCode.FORBIDDEN),
        ("someone", "producer", ErrorCode.FORBIDDEN),
        ("someone", "token_holder", ErrorCode.TOKEN_GATE_FAILED),
        ("someone", "superuser", ErrorCode.INVALID_MESSAGE),
    ]
    for who, role, expected in cases:
        async with header_ws(
            live_server, live_server.token(who, "artist"), sessionId=session["id"], role=role
        ) as ws:
            assert await close_code(ws) == expected, (who, role)


async def test_refused_tokens_close_4000(live_server: LiveServer) -> None:
    from server.identity.auth import mint_token

    session = await live_server.live_session()
    refused = [
        mint_token(live_server.secret, user_id=user(), role="viewer", ttl=-10),  # expired
        mint_token("another-secret-long-enough-for-hs256-keys", user_id=user(), role="viewer"),
        "not-a-jwt",
    ]
    for token in refused:
        async with header_ws(live_server, token, sessionId=session["id"]) as ws:
            assert await close_code(ws) == ErrorCode.INVALID_TICKET, token
    async with (  # a header that is not Bearer
        aiohttp.ClientSession() as http,
        http.ws_connect(
            live_server.ws_url,
            params={"sessionId": session["id"]},
            headers={"Authorization": "Basic dXNlcjpwYXNz"},
        ) as ws,
    ):
        assert await close_code(ws) == ErrorCode.INVALID_TICKET


async def test_guests_as_the_ticket_endpoint_treats_them(live_server: LiveServer) -> None:
    open_ = await live_server.live_session(allowGuests=True)
    closed = await live_server.live_session()
    from server.identity.auth import mint_token

    guest = mint_token(
        live_server.secret,
        user_id="guest-1",
        role="viewer",
        extra={"guest": True, "sid": open_["id"]},
    )
    async with header_ws(live_server, guest, sessionId=open_["id"]) as ws:
        await next_frame(ws, "session.state")
        assert await role_of(ws) == "viewer"
    refusals = [(open_["id"], "producer"), (closed["id"], "viewer")]
    for session_id, role in refusals:
        async with header_ws(live_server, guest, sessionId=session_id, role=role) as ws:
            assert await close_code(ws) == ErrorCode.FORBIDDEN, (session_id, role)


async def test_unknown_missing_or_ended_sessions(live_server: LiveServer) -> None:
    token = live_server.token(user())
    async with header_ws(live_server, token, "/no-such-session") as ws:
        assert await close_code(ws) == ErrorCode.SESSION_NOT_FOUND
    async with header_ws(live_server, token, sessionId="no-such-session") as ws:
        assert await close_code(ws) == ErrorCode.SESSION_NOT_FOUND
    async with header_ws(live_server, token) as ws:  # names no session at all
        assert await close_code(ws) == ErrorCode.SESSION_NOT_FOUND
    session = await live_server.live_session()
    async with header_ws(live_server, token, "/no-such-session", sessionId=session["id"]) as ws:
        assert await close_code(ws) == ErrorCode.INVALID_MESSAGE  # path and query disagree
    artist = live_server.token(session["artistId"], "artist")
    status, _ = await live_server.call(
        "POST", f"/v1/vstudio/sessions/{session['id']}/end", token=artist
    )
    assert status == 200
    async with header_ws(live_server, token, sessionId=session["id"]) as ws:
        assert await close_code(ws) == ErrorCode.SESSION_ENDED


async def ticket_ws_code(server: LiveServer, ticket: str, path: str = "", **query: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{server.ws_url}{path}", params={"ticket": ticket, **query}) as ws,
    ):
        code = await close_code(ws)
        assert code is not None
        return code


async def test_ticket_with_a_path_naming_no_session_is_4001(live_server: LiveServer) -> None:
    session = await live_server.live_session()
    other = await live_server.live_session()
    token = live_server.token(user())
    ticket = await live_server.ticket(token, session["id"])
    assert await ticket_ws_code(live_server, ticket, "/no-such-session") == 4001
    # a ticket for another session that exists stays 4000, by path or by query
    ticket = await live_server.ticket(token, session["id"])
    assert await ticket_ws_code(live_server, ticket, f"/{other['id']}") == 4000
    ticket = await live_server.ticket(token, session["id"])
    assert await ticket_ws_code(live_server, ticket, sessionId=other["id"]) == 4000
    # the credentials come first: a bad ticket is 4000 whatever the path names
    assert await ticket_ws_code(live_server, "nonsense", "/no-such-session") == 4000
    # a ticket wins over a header sent with it
    ticket = await live_server.ticket(token, session["id"])
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{live_server.ws_url}/{session['id']}",
            params={"ticket": ticket, "role": "artist"},
            headers={"Authorization": "Bearer not-a-jwt"},
        ) as ws,
    ):
        await next_frame(ws, "session.state")
        assert await role_of(ws) == "viewer"
