"""A client written from the seed alone works unchanged.

Everything here comes from the seed (``shared/seed/000_77282283e76c045f.txt``): the login, the
ticket, the WebSocket URL, the envelope, the example messages (copied verbatim, with only this
session's ids put in), the ``session.state`` fields and the SSE endpoint. It uses plain
``websockets`` and ``aiohttp`` and imports nothing of the project: accounts are made with the
``vstudio user add`` command an operator types, and the server is the suite's ``live_server``.
The artist's session is created and started over REST, which the seed does not describe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from tests.support.live_server import LiveServer

WAIT = 10.0

# --- the seed's examples, verbatim ------------------------------------------------------------

SEED_JOIN = """{
  "type": "session.join",
  "payload": {
    "sessionId": "abc123",
    "role": "viewer",
    "userId": "user_456"
  },
  "timestamp": 1699123456789
}"""

SEED_POLL_CREATE = """{
  "type": "poll.create",
  "payload": {
    "question": "Which song should I play next?",
    "options": ["Track A", "Track B", "Track C"],
    "duration": 60,
    "allowMultiple": false
  },
  "timestamp": 1699123456789
}"""

SEED_VOTE = """{
  "type": "poll.vote",
  "payload": {
    "pollId": "poll_789",
    "optionIndex": 1
  },
  "timestamp": 1699123456789
}"""

SEED_STATE_FIELDS = [
    "sessionId",
    "status",
    "viewerCount",
    "activePoll",
    "chatEnabled",
    "reactionsEnabled",
]
SEED_POLL_FIELDS = ["id", "question", "options", "results", "endsAt"]


def with_ids(example: str, **payload: Any) -> str:
    """The seed's example with this session's values in its payload, nothing else changed."""
    frame = json.loads(example)
    frame["payload"].update(payload)
    return json.dumps(frame)


def message(type_: str, payload: dict[str, Any], **extra: Any) -> str:
    """A frame in the seed's envelope: ``{type, payload, timestamp, requestId?}``."""
    return json.dumps({"type": type_, "payload": payload, "timestamp": 1699123456789, **extra})


# --- a seed client ----------------------------------------------------------------------------


class Frames:
    """Every frame a connection received, in order, read by a background task."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [frame for frame in self.seen if frame.get("type") == type_]

    async def wait_for(self, check: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.02)
        assert check(), what

    async def first(self, type_: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The payload of the first frame of ``type_`` that ``match`` accepts (waiting)."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [f["payload"] for f in self.of(type_) if match(f["payload"])]
            return bool(found)

        await self.wait_for(seen, f"a {type_} frame")
        return found[0]


async def read_ws(ws: ClientConnection, frames: Frames) -> None:
    async for raw in ws:
        frames.seen.append(json.loads(raw))


async def read_sse(response: aiohttp.ClientResponse, events: Frames) -> None:
    """``event:`` / ``data:`` / ``id:`` lines, a blank line ends an event."""
    event: dict[str, Any] = {}
    async for line in response.content:
        text = line.decode().rstrip("\r\n")
        if not text:
            if "type" in event:
                events.seen.append(event)
            event = {}
        elif text.startswith("event:"):
            event["type"] = text[6:].strip()
        elif text.startswith("data:"):
            event["payload"] = json.loads(text[5:].strip())
        elif text.startswith("id:"):
            event["id"] = text[3:].strip()


@contextlib.asynccontextmanager
async def reading(reader: Any, source: Any, frames: Frames) -> AsyncIterator[None]:
    task = asyncio.create_task(reader(source, frames))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class SeedClient:
    """The seed's authentication flow: login, ticket, WebSocket with the ticket."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url
        self.token = ""
        self.user: dict[str, Any] = {}

    async def post(self, path: str, body: dict[str, Any], token: bool = True) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if token else {}
        async with self.http.post(self.base_url + path, json=body, headers=headers) as response:
            data = await response.json()
            assert response.status in (200, 201), (path, response.status, data)
            return data

    async def login(self, username: str, password: str) -> None:
        """1. ``POST /v1/auth/login`` -> ``{token, user}``."""
        answer = await self.post(
            "/v1/auth/login", {"username": username, "password": password}, token=False
        )
        self.token, self.user = answer["token"], answer["user"]

    async def ticket(self, session_id: str, role: str) -> str:
        """2. ``POST /v1/vstudio/ticket`` -> ``{ticket, expiresIn: 30}``."""
        answer = await self.post("/v1/vstudio/ticket", {"sessionId": session_id, "role": role})
        assert answer["expiresIn"] == 30
        return str(answer["ticket"])

    def ws_url(self, ticket: str) -> str:
        """3. ``wss://.../v1/vstudio/ws?ticket=...`` (ws:// here: the test server has no TLS)."""
        return self.base_url.replace("http://", "ws://") + f"/v1/vstudio/ws?ticket={ticket}"


def add_account(live_server: LiveServer, redis_url: str, role: str) -> tuple[str, str]:
    """An account made as an operator makes one: ``vstudio user add NAME --role ROLE``."""
    name = f"seed-{role}-{uuid.uuid4().hex[:8]}"
    password = f"pw-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "VSTUDIO_REDIS_URL": redis_url, "VSTUDIO_JWT_SECRET": live_server.secret}
    command = [sys.executable, "-m", "vstudio_cli.main", "user", "add", name, "--role", role]
    done = subprocess.run(
        [*command, "--password", password], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return name, password


# --- the test ---------------------------------------------------------------------------------


async def test_a_client_written_from_the_seed_alone(
    live_server: LiveServer, redis_url: str
) -> None:
    artist_login = add_account(live_server, redis_url, "artist")
    fan_login = add_account(live_server, redis_url, "viewer")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        artist = SeedClient(http, live_server.base_url)
        await artist.login(*artist_login)
        session = await artist.post("/v1/vstudio/sessions", {"title": "From the seed"})
        sid = session["id"]
        await artist.post(f"/v1/vstudio/sessions/{sid}/start", {})

        fan = SeedClient(http, live_server.base_url)
        await fan.login(*fan_login)
        user_id = fan.user["id"]
        assert fan.user["username"] == fan_login[0]

        sse_headers = {"Authorization": f"Bearer {fan.token}", "Accept": "text/event-stream"}
        on_ws, on_sse, on_stage = Frames(), Frames(), Frames()
        async with (
            http.get(f"{live_server.base_url}/v1/vstudio/sse/{sid}", headers=sse_headers) as sse,
            connect(fan.ws_url(await fan.ticket(sid, "viewer"))) as ws,
            connect(artist.ws_url(await artist.ticket(sid, "artist"))) as stage,
            reading(read_sse, sse, on_sse),
            reading(read_ws, ws, on_ws),
            reading(read_ws, stage, on_stage),
        ):
            assert sse.status == 200 and sse.content_type == "text/event-stream"
            # New clients receive full state on connection, with the seed's fields
            await on_ws.wait_for(lambda: on_ws.seen, "a first frame")
            first = on_ws.seen[0]
            assert first["type"] == "session.state", first
            state = first["payload"]
            assert list(state)[: len(SEED_STATE_FIELDS)] == SEED_STATE_FIELDS
            assert state["sessionId"] == sid and state["status"] == "live"
            assert state["viewerCount"] >= 1 and state["activePoll"] is None
            assert state["chatEnabled"] is True and state["reactionsEnabled"] is True
            await on_sse.wait_for(lambda: on_sse.of("session.state"), "SSE session.state")
            assert on_sse.seen[0]["payload"]["sessionId"] == sid

            # the seed's session.join, with this session's id and this user's id, is accepted
            await ws.send(with_ids(SEED_JOIN, sessionId=sid, userId=user_id))
            # ... and one naming another user is refused: 4004 with a reason
            await ws.send(with_ids(SEED_JOIN, sessionId=sid))  # userId stays "user_456"
            refusal = await on_ws.first("error", lambda p: True)
            assert refusal["code"] == 4004 and "userId" in refusal["message"], refusal

            # the artist creates a poll with the seed's example, verbatim
            await stage.send(SEED_POLL_CREATE)
            created = await on_ws.first("poll.create", lambda p: True)
            assert created["question"] == "Which song should I play next?"
            assert created["options"] == ["Track A", "Track B", "Track C"]
            poll_id = created["id"]

            # the seed's vote, with this poll's id; the live tally is a poll.update
            await ws.send(with_ids(SEED_VOTE, pollId=poll_id))

            def is_tally(p: dict[str, Any]) -> bool:
                return p.get("pollId") == poll_id and p.get("results") == [0, 1, 0]

            tally = await on_ws.first("poll.update", is_tally)
            assert tally == {"pollId": poll_id, "results": [0, 1, 0], "totalVotes": 1}
            over_sse = await on_sse.first("poll.update", is_tally)
            assert over_sse == tally
            assert not on_ws.of("poll.results")  # only the final result, when the poll ends

            # chat, a reaction and two tips without requestId (each one counts)
            await ws.send(message("chat.message", {"text": "Play Track B!"}))
            chat = await on_ws.first(
                "chat.aggregate",
                lambda p: any(m["text"] == "Play Track B!" for m in p["messages"]),
            )
            [line] = [m for m in chat["messages"] if m["text"] == "Play Track B!"]
            assert line["platform"] == "audifi" and line["id"] and line["timestamp"] > 0
            emoji = state["allowedReactions"][0] if state.get("allowedReactions") else "🔥"
            await ws.send(message("reaction.send", {"emoji": emoji}))
            burst = await on_ws.first("reaction.burst", lambda p: emoji in p.get("counts", {}))
            assert burst["counts"][emoji] >= 1
            for _ in range(2):
                await ws.send(message("tip.send", {"amount": 5, "currency": "USD"}))
            await on_ws.wait_for(lambda: len(on_ws.of("tip.received")) == 2, "two tips")
            tips = [f["payload"] for f in on_ws.of("tip.received")]
            assert tips[0]["tipId"] != tips[1]["tipId"]
            assert [t["amount"] for t in tips] == [5, 5] and tips[1]["totals"] == {"USD": 10}

            # a second client's full state shows the vote where the seed puts it
            async with connect(fan.ws_url(await fan.ticket(sid, "viewer"))) as again:
                state = json.loads(await asyncio.wait_for(again.recv(), WAIT))["payload"]
            active = state["activePoll"]
            assert list(active)[: len(SEED_POLL_FIELDS)] == SEED_POLL_FIELDS
            assert active["id"] == poll_id and active["results"] == [0, 1, 0]
            assert active["endsAt"] == created["endsAt"]
            assert active["question"] == "Which song should I play next?"

            # the only error the fan got was the deliberate mismatch
            assert [f["payload"]["code"] for f in on_ws.of("error")] == [4004]
            assert not on_stage.of("error"), on_stage.of("error")

        # the connection drops; the seed's client waits initialDelay (1 s, jitter 0.3) and
        # reconnects with a fresh ticket: the server takes it back and tells it the present
        delay = SEED_RECONNECT["initialDelay"] / 1000 * (1 - SEED_RECONNECT["jitter"])
        await asyncio.sleep(delay)
        started = asyncio.get_running_loop().time()
        async with connect(fan.ws_url(await fan.ticket(sid, "viewer"))) as back:
            state = json.loads(await asyncio.wait_for(back.recv(), WAIT))
        assert state["type"] == "session.state"
        assert state["payload"]["activePoll"]["results"] == [0, 1, 0]
        waited = asyncio.get_running_loop().time() - started
        assert waited < SEED_RECONNECT["initialDelay"] / 1000, waited  # back within one step


SEED_RECONNECT = {"initialDelay": 1000, "maxDelay": 30000, "factor": 2, "jitter": 0.3}
"""The seed's ``reconnectConfig`` (maxRetries left out: one retry is enough here)."""
