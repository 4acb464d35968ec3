"""Interactions end to end: real ``vstudio serve`` processes, real WebSocket and REST clients.

Every test talks to servers started by the ``live_server`` / ``server_factory`` fixtures over
the network, on the suite's Redis; ingested chat is published through the bus as an ingestion
worker does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import pytest

from broker import Bus, OutgoingEvent, connect
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory


class Client:
    """A WebSocket client that answers requests by ``requestId`` and keeps every other frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())
        self._changed = asyncio.Event()

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = message.json()
            waiter = self._waiting.pop(frame.get("requestId") or "", None)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
            else:
                self.frames.append(frame)
                self._changed.set()

    async def request(self, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one message and wait for its reply (the result or an ``error`` frame)."""
        request_id = uuid.uuid4().hex
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        await self.ws.send_json({"type": type_, "payload": payload, "requestId": request_id})
        return await asyncio.wait_for(waiter, 10)

    def of(self, *types: str) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame["type"] in types]

    async def wait_for(self, check: Any, timeout: float = 10) -> None:
        """Wait until ``check()`` is true of the frames received so far."""
        async with asyncio.timeout(timeout):
            while not check():
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def connected(server: LiveServer, session_id: str, user: str, role: str = "viewer") -> Any:
    async with server.ws(session_id, user, role) as ws:
        client = Client(ws)
        await client.wait_for(lambda: client.of("session.state"))
        try:
            yield client
        finally:
            client._reader.cancel()


@asynccontextmanager
async def many(
    server: LiveServer, session_id: str, users: list[str]
) -> AsyncIterator[list[Client]]:
    """Clients for ``users``, connected fifty at a time."""
    async with AsyncExitStack() as stack:
        clients: list[Client] = []
        for start in range(0, len(users), 50):
            chunk = users[start : start + 50]
            clients += await asyncio.gather(
                *(stack.enter_async_context(connected(server, session_id, u)) for u in chunk)
            )
        yield clients


def user(prefix: str = "fan") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def rest_vote(
    server: LiveServer, session_id: str, who: str, poll_id: str, option: int
) -> Any:
    return await server.call(
        "POST",
        f"/v1/vstudio/sessions/{session_id}/polls/{poll_id}/votes",
        token=server.token(who),
        json={"option": option},
    )


async def test_poll_lifecycle_over_websocket_and_rest(live_server: LiveServer) -> None:
    artist = user("artist")
    session = await live_server.live_session(artist)
    sid = session["id"]
    async with (
        connected(live_server, sid, artist, "artist") as host,
        connected(live_server, sid, user()) as fan,
    ):
        poll = (
            await host.request(
                "poll.create",
                {"question": "Encore?", "options": ["yes", "no", "later"], "allowMultiple": True},
            )
        )["payload"]
        await fan.wait_for(lambda: fan.of("poll.create"))
        assert fan.of("poll.create")[0]["payload"]["id"] == poll["id"]
        # allowMultiple: one vote per option; the repeat says it was already counted (4004)
        for option in (0, 2):
            reply = await fan.request("poll.vote", {"pollId": poll["id"], "option": option})
            assert reply["payload"]["counted"] is True
        again = await fan.request("poll.vote", {"pollId": poll["id"], "option": 2})
        assert again["type"] == "error" and again["payload"]["code"] == 4004
        assert "already counted" in again["payload"]["message"]
        bad = await fan.request("poll.vote", {"pollId": poll["id"], "option": 7})
        assert bad["payload"]["code"] == 4006 and "options 0 to 2" in bad["payload"]["message"]
        # a viewer may not end the poll; the artist may, and everyone gets the final results
        refused = await fan.request("poll.end", {"pollId": poll["id"]})
        assert refused["payload"]["code"] == 4004
        ended = await host.request("poll.end", {"pollId": poll["id"]})
        assert ended["payload"]["status"] == "ended"
        await fan.wait_for(lambda: any(f["payload"].get("final") for f in fan.of("poll.results")))
        [final] = [f for f in fan.of("poll.results") if f["payload"].get("final")]
        assert final["payload"]["results"] == [1, 0, 1] and final["id"]
        late = await fan.request("poll.vote", {"pollId": poll["id"], "option": 1})
        assert late["payload"]["code"] == 4006 and "has ended" in late["payload"]["message"]
    # results are kept after the end: over REST, and in the session.state of a new connection
    status, body = await live_server.call(
        "GET", f"/v1/vstudio/sessions/{sid}/polls", token=live_server.token(user())
    )
    assert status == 200 and body["activePoll"] is None
    assert [(p["id"], p["results"]) for p in body["polls"]] == [(poll["id"], [1, 0, 1])]
    async with connected(live_server, sid, user()) as newcomer:
        state = newcomer.of("session.state")[0]["payload"]
        assert state["polls"][0]["results"] == [1, 0, 1] and state["activePoll"] is None
    status, body = await rest_vote(live_server, sid, user(), poll["id"], 0)
    assert status == 400 and body["code"] == 4006
    status, _ = await live_server.call("GET", f"/v1/vstudio/sessions/{sid}/polls")
    assert status == 401
    status, body = await live_server.call(
        "GET", "/v1/vstudio/sessions/nosuchsession/polls", token=live_server.token(user())
    )
    assert status == 404 and body["code"] == 4001


@pytest.mark.slow
@pytest.mark.parametrize(
    "count", [120, pytest.param(1000, marks=[pytest.mark.load, pytest.mark.timeout(400)])]
)
async def test_votes_over_two_processes_and_both_transports_counted_once(
    server_factory: ServerFactory, count: int
) -> None:
    first, second = server_factory(), server_factory()
    artist = user("artist")
    session = await first.live_session(artist)
    sid = session["id"]
    voters = [user() for _ in range(count)]
    status, poll = await first.call(
        "POST",
        f"/v1/vstudio/sessions/{sid}/polls",
        token=first.token(artist, "artist"),
        json={"question": "Which song?", "options": ["a", "b", "c", "d"]},
    )
    assert status == 200, poll
    acknowledged: Counter[int] = Counter()
    repeats = 0
    async with (
        many(first, sid, voters[::2]) as on_first,
        many(second, sid, voters[1::2]) as on_second,
    ):
        sockets = dict(zip(voters[::2], on_first, strict=True))
        sockets.update(zip(voters[1::2], on_second, strict=True))

        async def vote_twice(index: int, who: str) -> None:
            """Each voter votes over WebSocket on one process and over REST on the other."""
            nonlocal repeats
            option = index % 4
            rest_server = second if who in voters[::2] else first
            ws_try = sockets[who].request("poll.vote", {"pollId": poll["id"], "option": option})
            rest_try = rest_vote(rest_server, sid, who, poll["id"], option)
            ws_reply, (rest_status, rest_body) = await asyncio.gather(ws_try, rest_try)
            counted = [ws_reply["type"] == "poll.vote", rest_status == 200]
            if any(counted):
                acknowledged[option] += 1
            assert counted.count(True) == 1, (ws_reply, rest_body)
            refusal = rest_body if rest_status != 200 else ws_reply["payload"]
            assert refusal["code"] == 4004 and "already counted" in refusal["message"]
            repeats += 1

        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(vote_twice(i, who) for i, who in enumerate(voters)))
        voting = asyncio.get_running_loop().time() - started
        expected = [acknowledged[option] for option in range(4)]
        assert sum(expected) == len(voters) and repeats == len(voters)
        # every client on both processes sees results that end at the acknowledged tallies
        observers = [on_first[0], on_second[0]]
        for observer in observers:
            await observer.wait_for(
                lambda o=observer: (
                    (o.of("poll.results") or [{}])[-1].get("payload", {}).get("results") == expected
                )
            )
        results = on_first[0].of("poll.results")
        # throttled to 4 per second across both processes, not one per vote
        assert len(results) <= (voting + 1) * 4 + 2 < len(voters)
    status, body = await second.call(
        "GET", f"/v1/vstudio/sessions/{sid}/polls/{poll['id']}", token=second.token(user())
    )
    assert status == 200 and body["results"] == expected


@pytest.mark.slow
async def test_auto_end_with_two_processes_racing_happens_once(
    server_factory: ServerFactory,
) -> None:
    first, second = server_factory(), server_factory()
    artist = user("artist")
    sid = (await first.live_session(artist))["id"]
    async with (
        connected(first, sid, artist, "artist") as host,
        connected(first, sid, user()) as on_first,
        connected(second, sid, user()) as on_second,
    ):
        poll = (
            await host.request(
                "poll.create", {"question": "Quick?", "options": ["y", "n"], "duration": 5}
            )
        )["payload"]
        await on_second.request("poll.vote", {"pollId": poll["id"], "option": 1})
        for client in (on_first, on_second):
            await client.wait_for(lambda c=client: c.of("poll.end"), timeout=15)
        await asyncio.sleep(0.5)  # a second end, if there were one, would arrive by now
        for client in (on_first, on_second):
            [end] = client.of("poll.end")
            assert end["payload"]["endedAt"] == poll["endsAt"]
            finals = [f for f in client.of("poll.results") if f["payload"].get("final")]
            assert [f["payload"]["results"] for f in finals] == [[0, 1]]


async def test_chat_is_coalesced_deduplicated_and_ordered_per_platform(
    live_server: LiveServer, redis_url: str
) -> None:
    sid = (await live_server.live_session())["id"]
    bus = Bus(await connect(redis_url))
    async with (
        connected(live_server, sid, user()) as reader,
        connected(live_server, sid, "f1") as fan,
    ):
        sent: dict[str, list[str]] = {"twitch": [], "youtube": []}
        for batch in range(10):
            events = []
            for n in range(30):
                platform = "twitch" if n % 3 else "youtube"
                message_id = f"{platform}:{batch}-{n}"
                sent[platform].append(message_id)
                payload = {
                    "id": message_id,
                    "platform": platform,
                    "username": f"viewer{n}",
                    "text": f"hello {batch}-{n}",
                    "timestamp": 1,
                }
                events.append(OutgoingEvent("chat.message", payload, dedupe_id=message_id))
            await bus.publish_many(sid, "chat", events)
            # the same message read by a second worker is published once
            await bus.publish_many(sid, "chat", events[:5])
            await asyncio.sleep(0.01)
        fan_reply = await fan.request("chat.message", {"text": "from the page"})
        total = 300 + 1

        def received() -> list[dict[str, Any]]:
            return [m for f in reader.of("chat.aggregate") for m in f["payload"]["messages"]]

        await reader.wait_for(lambda: len(received()) >= total)
        await asyncio.sleep(0.2)
        messages = received()
        assert len(messages) == total and len({m["id"] for m in messages}) == total
        for platform, ids in sent.items():
            assert [m["id"] for m in messages if m["platform"] == platform] == ids
        [own] = [m for m in messages if m["platform"] == "audifi"]
        assert own["id"] == fan_reply["payload"]["id"] and own["username"] == "f1"
        assert len(reader.of("chat.aggregate")) < 60  # coalesced: far fewer frames than messages
        assert not reader.of("chat.message")
    await bus.redis.aclose()


@pytest.mark.slow
async def test_reactions_are_summed_across_processes(server_factory: ServerFactory) -> None:
    first, second = (
        server_factory(VSTUDIO_REACTION_RATE_LIMIT="1000", VSTUDIO_REACTION_WINDOW_MS="100")
        for _ in range(2)
    )
    sid = (await first.live_session())["id"]
    async with (
        connected(first, sid, user()) as a,
        connected(second, sid, user()) as b,
        connected(first, sid, user()) as watcher,
    ):
        sent: Counter[str] = Counter()
        for index in range(90):
            emoji = ["🔥", "🎉", "👏"][index % 3]
            client = a if index % 2 else b
            assert (await client.request("reaction.send", {"emoji": emoji}))["type"] != "error"
            sent[emoji] += 1
        unknown = await a.request("reaction.send", {"emoji": "🍕"})
        assert unknown["payload"]["code"] == 4006 and "🔥" in unknown["payload"]["message"]

        def summed() -> Counter[str]:
            total: Counter[str] = Counter()
            for burst in watcher.of("reaction.burst"):
                total.update(burst["payload"]["counts"])
            return total

        await watcher.wait_for(lambda: summed() == sent)
        await asyncio.sleep(0.4)
        assert summed() == sent  # nothing counted twice by the two processes
        assert all(burst["payload"]["window"] == 100 for burst in watcher.of("reaction.burst"))


async def test_tips_are_idempotent_per_request_id(live_server: LiveServer) -> None:
    artist = user("artist")
    sid = (await live_server.live_session(artist))["id"]
    fan_id = user()
    async with connected(live_server, sid, fan_id) as fan, connected(live_server, sid, user()) as w:
        frame = {"type": "tip.send", "payload": {"amount": 5, "currency": "USD"}}
        replies = []
        for _ in range(2):  # the same requestId sent twice, as a client retrying would
            await fan.ws.send_json({**frame, "requestId": "tip-1"})
        await fan.wait_for(lambda: len(fan.of("tip.send")) == 2)
        replies = fan.of("tip.send")
        assert replies[0]["payload"]["tip"] == replies[1]["payload"]["tip"]
        assert [r["payload"]["duplicate"] for r in replies] == [False, True]
        path = f"/v1/vstudio/sessions/{sid}/tips"
        for _ in range(2):
            status, body = await live_server.call(
                "POST",
                path,
                token=live_server.token(fan_id),
                headers={"Idempotency-Key": "tip-2"},
                json={"amount": 2.5, "currency": "EUR", "message": "thanks"},
            )
            assert status == 200, body
        await w.wait_for(lambda: len(w.of("tip.received")) >= 2)
        await asyncio.sleep(0.3)
        assert [t["payload"]["amount"] for t in w.of("tip.received")] == [5, 2.5]
        status, body = await live_server.call(
            "POST", path, token=live_server.token(fan_id), json={"amount": 1, "currency": "USD"}
        )
        assert status == 400 and "requestId" in body["message"]
    status, ledger = await live_server.call("GET", path, token=live_server.token(artist, "artist"))
    assert status == 200 and ledger["totals"] == {"EUR": 2.5, "USD": 5.0}
    assert len(ledger["tips"]) == 2
    status, _ = await live_server.call("GET", path, token=live_server.token(fan_id))
    assert status == 403


async def test_moderation_by_a_producer_and_refused_for_a_viewer(live_server: LiveServer) -> None:
    producer = user("producer")
    session = await live_server.live_session(producerIds=[producer])
    sid = session["id"]
    async with (
        connected(live_server, sid, producer, "producer") as staff,
        connected(live_server, sid, "troll") as troll,
        connected(live_server, sid, user()) as fan,
    ):
        await fan.wait_for(lambda: any("id" in frame for frame in fan.frames))
        before = next(frame["id"] for frame in fan.frames if "id" in frame)
        said = await troll.request("chat.message", {"text": "buy my stuff"})
        message_id = said["payload"]["id"]
        refused = await fan.request("chat.delete", {"messageId": message_id})
        assert refused["type"] == "error" and refused["payload"]["code"] == 4004
        deleted = await staff.request("chat.delete", {"messageId": message_id})
        assert deleted["payload"]["removedFromHistory"] == 1
        await fan.wait_for(lambda: fan.of("chat.delete"))
        assert fan.of("chat.delete")[0]["payload"]["messageId"] == message_id
        muted = await staff.request("chat.mute", {"userId": "troll", "muted": True})
        assert muted["payload"] == {"userId": "troll", "muted": True}
        again = await troll.request("chat.message", {"text": "hello?"})
        assert again["payload"]["code"] == 4004 and "muted" in again["payload"]["message"]
        await fan.wait_for(lambda: fan.of("chat.mute"))
        # chat turned off by a producer (session.update) is enforced for everyone's fan chat
        off = await staff.request("session.update", {"chatEnabled": False})
        assert off["type"] != "error", off
        quiet = await fan.request("chat.message", {"text": "anyone?"})
        assert quiet["payload"]["code"] == 4004 and "turned off" in quiet["payload"]["message"]
    # a client resuming from before the message never sees it
    async with live_server.ws(sid, user(), since=before) as ws:
        frames = []
        while not frames or frames[-1]["type"] != "session.update":
            try:
                frames.append(await asyncio.wait_for(ws.receive_json(), 5))
            except TimeoutError:
                raise AssertionError([(f["type"], f.get("payload")) for f in frames]) from None
        types = [f["type"] for f in frames]
        assert types[0] == "session.state" and frames[0]["payload"]["recovered"] is True
        assert "chat.delete" in types and "chat.mute" in types
        chat = [
            m for f in frames if f["type"] == "chat.aggregate" for m in f["payload"]["messages"]
        ]
        assert message_id not in {m["id"] for m in chat}


async def test_a_poll_does_not_outlive_its_session(live_server: LiveServer) -> None:
    artist = user("artist")
    sid = (await live_server.live_session(artist))["id"]
    token = live_server.token(artist, "artist")
    base = f"/v1/vstudio/sessions/{sid}"
    status, poll = await live_server.call(
        "POST", base + "/polls", token=token, json={"question": "Last one?", "options": ["a", "b"]}
    )
    assert status == 200, poll
    status, body = await rest_vote(live_server, sid, user(), poll["id"], 1)
    assert status == 200, body
    status, body = await live_server.call("POST", base + "/end", token=token)
    assert status == 200, body
    status, body = await live_server.call("GET", base + "/polls", token=token)
    assert status == 200 and body["activePoll"] is None
    [ended] = body["polls"]
    assert ended["status"] == "ended" and ended["results"] == [0, 1]
