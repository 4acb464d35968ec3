"""Quotas that follow the account, not the socket: chat and reactions across all of a user's
connections (and REST), tickets per user, sessions per artist."""

from __future__ import annotations

import asyncio
import uuid

import orjson

from broker.models import ErrorCode
from tests.support.types import ServerFactory
from tests.support.websocket import receive_type


async def test_chat_limit_holds_across_one_users_connections_and_rest(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(VSTUDIO_CHAT_RATE_LIMIT="4", VSTUDIO_CHAT_RATE_WINDOW="60")
    session = await server.live_session()
    sid, user = session["id"], f"fan-{uuid.uuid4().hex[:6]}"
    answers: list[int] = []
    async with server.ws(sid, user) as one, server.ws(sid, user) as two:
        for ws in (one, two):
            await receive_type(ws, "session.state")
        for n in range(6):  # 3 per socket: 6 in all, the limit is 4 per user
            ws = (one, two)[n % 2]
            frame = {"type": "chat.message", "requestId": f"c{n}", "payload": {"text": f"m{n}"}}
            await ws.send_str(orjson.dumps(frame).decode())
            while True:
                reply = orjson.loads((await ws.receive()).data)
                if reply.get("requestId") == f"c{n}":
                    break
            answers.append(reply["payload"].get("code", 0) if reply["type"] == "error" else 0)
    assert answers.count(0) == 4, answers
    assert answers[4:] == [ErrorCode.RATE_LIMITED] * 2
    status, body = await server.call(  # REST shares the same window
        "POST",
        f"/v1/vstudio/sessions/{sid}/chat",
        token=server.token(user),
        json={"text": "via rest"},
    )
    assert status == 429 and body["code"] == ErrorCode.RATE_LIMITED


async def test_another_user_is_not_limited_by_the_first(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_REACTION_RATE_LIMIT="2", VSTUDIO_REACTION_RATE_WINDOW="60")
    session = await server.live_session()
    sid = session["id"]
    for user in (f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"):
        token = server.token(user)
        statuses = []
        for _ in range(3):
            status, _ = await server.call(
                "POST", f"/v1/vstudio/sessions/{sid}/reactions", token=token, json={"emoji": "🔥"}
            )
            statuses.append(status)
        assert statuses == [200, 200, 429], (user, statuses)


async def test_tickets_are_limited_per_user(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_TICKET_RATE_LIMIT="3")
    session = await server.live_session()
    token = server.token(f"t-{uuid.uuid4().hex[:6]}")

    async def ticket() -> int:
        status, _ = await server.call(
            "POST", "/v1/vstudio/ticket", token=token, json={"sessionId": session["id"]}
        )
        return status

    statuses = [await ticket() for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    status, _ = await server.call(  # someone else still gets one
        "POST",
        "/v1/vstudio/ticket",
        token=server.token(f"t-{uuid.uuid4().hex[:6]}"),
        json={"sessionId": session["id"]},
    )
    assert status == 200


async def test_sessions_per_artist_are_capped(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_MAX_SESSIONS_PER_ARTIST="2")
    artist = f"artist-{uuid.uuid4().hex[:8]}"
    token = server.token(artist, "artist")

    async def create(title: str) -> tuple[int, dict[str, object]]:
        status, body = await server.call(
            "POST", "/v1/vstudio/sessions", token=token, json={"title": title}
        )
        return status, body

    results = await asyncio.gather(create("one"), create("two"))
    assert [status for status, _ in results] == [201, 201]
    status, body = await create("three")
    assert status == 403 and "2 sessions" in str(body["message"]), body
    first = results[0][1]["id"]
    status, _ = await server.call("POST", f"/v1/vstudio/sessions/{first}/end", token=token)
    assert status == 200  # an ended session no longer counts
    status, _ = await create("three again")
    assert status == 201


async def test_the_any_limit_stays_per_connection(server_factory: ServerFactory) -> None:
    """A user's busy socket does not use up the 'any' budget of their other sockets: only the
    chat and reaction limits follow the account."""
    server = server_factory(
        VSTUDIO_MESSAGE_RATE_LIMIT="3",
        VSTUDIO_MESSAGE_RATE_WINDOW="60",
        VSTUDIO_CHAT_RATE_LIMIT="100",
    )
    session = await server.live_session()
    sid, user = session["id"], f"fan-{uuid.uuid4().hex[:6]}"
    answers: list[list[int]] = [[], []]
    async with server.ws(sid, user) as one, server.ws(sid, user) as two:
        for ws in (one, two):
            await receive_type(ws, "session.state")
        for index, ws in enumerate((one, two)):
            for n in range(4):  # 4 on each socket: the 'any' limit is 3 per connection
                request = f"c{index}-{n}"
                frame = {"type": "chat.message", "requestId": request, "payload": {"text": "m"}}
                await ws.send_str(orjson.dumps(frame).decode())
                while True:
                    reply = orjson.loads((await ws.receive()).data)
                    if reply.get("requestId") == request:
                        break
                code = reply["payload"].get("code", 0) if reply["type"] == "error" else 0
                answers[index].append(code)
    assert answers == [[0, 0, 0, ErrorCode.RATE_LIMITED]] * 2, answers
