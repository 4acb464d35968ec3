"""Fan-out to rooms bigger than one chunk: the walker goes round the clients between yields.

The server runs with ``VSTUDIO_FANOUT_CHUNK=2`` so a handful of real clients already takes
several chunks per round; events published meanwhile land mid-round and clients that are behind
get several frames in one write. Every client must still see every event once, in order.
"""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import orjson

from broker import Bus
from broker.bus import OutgoingEvent
from broker.models import ErrorCode
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory

CLIENTS = 7


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def read_until_done(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    """Every chat message id and tip ``n`` received, in order, until the ``done`` tip."""
    seen: list[str] = []
    async with asyncio.timeout(20):
        while True:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            frame = orjson.loads(message.data)
            if frame["type"] == "chat.aggregate":
                seen += [chat["id"] for chat in frame["payload"]["messages"]]
            elif frame["type"] == "tip.received":
                if frame["payload"].get("done"):
                    return seen
                seen.append(f"tip:{frame['payload']['n']}")


async def viewer(
    server: LiveServer, http: aiohttp.ClientSession, sid: str, since: str | None = None
) -> aiohttp.ClientWebSocketResponse:
    """A new viewer's WebSocket, its ``session.state`` read."""
    ticket = await server.ticket(server.token(user(), "viewer"), sid)
    query = f"?ticket={ticket}" + (f"&since={since}" if since else "")
    ws = await http.ws_connect(server.ws_url + query)
    assert (await ws.receive_json(timeout=5))["type"] == "session.state"
    return ws


async def publish_burst(
    bus: Bus, sid: str, rounds: int, start: int = 0
) -> tuple[list[str], list[str]]:
    """Chat in batches with tips between them; the labels in order and their stream ids."""
    labels: list[str] = []
    ids: list[str] = []
    for r in range(start, start + rounds):
        chat = [f"twitch:{r}-{n}" for n in range(10)]
        events = [OutgoingEvent("chat.message", {"id": c, "text": "x"}, c) for c in chat]
        ids += await bus.publish_many(sid, "chat", events)
        labels += chat
        ids.append(await bus.publish(sid, "events", "tip.received", {"n": r}))
        labels.append(f"tip:{r}")
        await asyncio.sleep(0.002)
    return labels, ids


async def test_every_client_gets_every_event_once_in_order_with_a_resume_mid_burst(
    server_factory: ServerFactory, bus: Bus
) -> None:
    server = server_factory(VSTUDIO_FANOUT_CHUNK="2")
    session = await server.live_session()
    sid = session["id"]
    async with aiohttp.ClientSession() as http:
        sockets = [await viewer(server, http, sid) for _ in range(CLIENTS)]
        readers = [asyncio.create_task(read_until_done(ws)) for ws in sockets]
        first_labels, first_ids = await publish_burst(bus, sid, 20)
        # a client resuming from the middle of what was just sent, while more is sent
        resume_at = len(first_labels) // 2
        late = await viewer(server, http, sid, since=first_ids[resume_at - 1])
        late_reader = asyncio.create_task(read_until_done(late))
        more_labels, _ = await publish_burst(bus, sid, 20, start=20)
        await bus.publish(sid, "events", "tip.received", {"done": True})
        everything = first_labels + more_labels
        for reader in readers:
            assert await reader == everything
        assert await late_reader == everything[resume_at:]
        for ws in [*sockets, late]:
            await ws.close()


async def test_session_end_reaches_every_client_before_its_close_frame(
    server_factory: ServerFactory, bus: Bus
) -> None:
    server = server_factory(VSTUDIO_FANOUT_CHUNK="2")
    artist = user()
    session = await server.live_session(artist)
    sid = session["id"]
    async with aiohttp.ClientSession() as http:
        sockets = [await viewer(server, http, sid) for _ in range(CLIENTS)]
        await publish_burst(bus, sid, 5)  # the walker is busy when the end arrives
        status, body = await server.call(
            "POST", f"/v1/vstudio/sessions/{sid}/end", token=server.token(artist, "artist")
        )
        assert status == 200, body
        # Read late: the server must wait for each client's close frame (RFC 6455 7.1.1) and
        # not cut the connection first, or a client that answers late sees 1006, not 4002.
        await asyncio.sleep(0.5)
        for ws in sockets:
            types: list[str] = []
            async with asyncio.timeout(10):
                while True:
                    message = await ws.receive()
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    types.append(orjson.loads(message.data)["type"])
            assert types[-1] == "session.end", types[-5:]
            assert ws.close_code == ErrorCode.SESSION_ENDED, server.log[-3000:]
