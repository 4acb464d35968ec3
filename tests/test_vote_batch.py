"""Votes counted in batches (issue 17): one script call per poll per batch, the rules per vote.

The rules run against a real Redis through ``ActionTable.perform`` as every transport does;
the storm runs 2,000 real WebSockets against a real ``vstudio serve`` process.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from broker import Bus, keys
from broker.models import ErrorCode, MessageType, ProtocolError, Role
from server.identity.auth import Identity
from server.identity.tickets import TicketStore
from server.interactions.ballots import BallotBox, Receipt, receipt
from server.interactions.polls import POLL_ID
from server.wire import reply_envelope
from tests.support.studio import Studio, open_studio
from tests.support.types import ServerFactory

VOTE = MessageType.POLL_VOTE


async def new_poll(studio: Studio, **fields: object) -> dict[str, Any]:
    spec = {"question": "Next song?", "options": ["Intro", "Outro"], **fields}
    return await studio.do(studio.actor(Role.PRODUCER, "producer-1"), MessageType.POLL_CREATE, spec)


async def outcome(call: Awaitable[Any]) -> Any:
    """The reply, or the error's ``(code, message)``."""
    try:
        return await call
    except ProtocolError as error:
        return (error.code, error.message)


async def one_turn(studio: Studio, votes: list[tuple[Any, int]], poll_id: str) -> list[Any]:
    """Send every vote in the same loop turn; their outcomes, in order."""
    return await asyncio.gather(
        *(
            outcome(studio.do(actor, VOTE, {"pollId": poll_id, "optionIndex": option}))
            for actor, option in votes
        )
    )


async def counts(studio: Studio, poll_id: str) -> list[int]:
    poll = await studio.services.polls.book.get(studio.session_id, poll_id)
    assert poll is not None
    return poll.results


async def test_the_votes_of_one_turn_are_one_script_call(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio, options=["a", "b", "c"])
        box = studio.services.polls.book.ballots
        before = box.calls
        replies = await one_turn(studio, [(studio.actor(), n % 3) for n in range(60)], poll["id"])
        assert box.calls == before + 1
        assert replies == [
            {"pollId": poll["id"], "optionIndex": n % 3, "counted": True} for n in range(60)
        ]
        assert await counts(studio, poll["id"]) == [20, 20, 20]


async def test_a_storms_votes_linger_into_one_call_and_a_lone_vote_does_not(bus: Bus) -> None:
    """After a batch of several votes the poll's next batch waits ``LINGER`` for more (a
    storm's votes arrive a few at a time); after a batch of one, a vote goes at once."""
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        box = studio.services.polls.book.ballots
        session_id, poll_id = studio.session_id, poll["id"]
        voter = iter(range(1000))

        async def two_turns_apart() -> int:
            """Calls made for two votes cast two loop turns apart."""
            before = box.calls
            first = box.cast(session_id, poll_id, f"user-{next(voter)}", 0)
            await asyncio.sleep(0)
            await asyncio.sleep(0)  # the first vote's call is in flight now, unless it waits
            second = box.cast(session_id, poll_id, f"user-{next(voter)}", 1)
            await asyncio.gather(first, second)
            return box.calls - before

        assert await two_turns_apart() == 2  # quiet: the first vote went alone
        storm = [box.cast(session_id, poll_id, f"user-{next(voter)}", 0) for _ in range(5)]
        await asyncio.gather(*storm)
        assert await two_turns_apart() == 1  # a storm: the second vote joined the first
        await box.cast(session_id, poll_id, f"user-{next(voter)}", 0)  # alone: storm over
        assert await two_turns_apart() == 2
        assert await counts(studio, poll_id) == [1 + 5 + 1 + 1 + 1, 3]


async def test_the_same_user_twice_in_one_batch_counts_once(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        fan, other = studio.actor(), studio.actor()
        replies = await one_turn(studio, [(fan, 1), (other, 0), (fan, 0)], poll["id"])
        assert replies[0]["counted"] is True and replies[1]["counted"] is True
        code, message = replies[2]
        assert code == ErrorCode.FORBIDDEN
        assert f"option 0 in poll {poll['id']} was already counted" in message
        assert await counts(studio, poll["id"]) == [1, 1]


async def test_a_retry_with_the_same_request_id_in_a_later_batch_is_not_counted(
    bus: Bus,
) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        fan = studio.actor(request_id="vote-1")
        first = await one_turn(studio, [(fan, 0), (studio.actor(), 1)], poll["id"])
        assert [reply["counted"] for reply in first] == [True, True]
        again = await one_turn(studio, [(studio.actor(), 1), (fan, 0)], poll["id"])
        assert again[0]["counted"] is True
        assert again[1][0] == ErrorCode.FORBIDDEN and "already counted" in again[1][1]
        assert await counts(studio, poll["id"]) == [1, 2]


async def test_votes_after_the_end_are_refused_each_with_the_poll_error(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        counted = await one_turn(studio, [(studio.actor(), 0), (studio.actor(), 1)], poll["id"])
        assert all(reply["counted"] for reply in counted)
        await studio.do(studio.actor(Role.ARTIST), MessageType.POLL_END, {"pollId": poll["id"]})
        late = await one_turn(studio, [(studio.actor(), 0), (studio.actor(), 1)], poll["id"])
        assert late == [(ErrorCode.INVALID_MESSAGE, f"poll {poll['id']} has ended")] * 2
        assert await counts(studio, poll["id"]) == [1, 1]


async def test_a_deadline_passed_while_votes_wait_refuses_the_whole_batch(bus: Bus) -> None:
    async with open_studio(bus, start=False) as studio:  # no auto-end: the script decides
        poll = await new_poll(studio, duration=5)
        await bus.redis.hset(keys.poll(studio.session_id, poll["id"]), "endsAt", 1)
        replies = await one_turn(studio, [(studio.actor(), 0), (studio.actor(), 1)], poll["id"])
        assert replies == [(ErrorCode.INVALID_MESSAGE, f"poll {poll['id']} has ended")] * 2
        assert await counts(studio, poll["id"]) == [0, 0]


async def test_a_bad_option_is_refused_alone_in_its_batch(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        replies = await one_turn(
            studio, [(studio.actor(), 0), (studio.actor(), 5), (studio.actor(), 1)], poll["id"]
        )
        assert replies[0]["counted"] and replies[2]["counted"]
        assert replies[1] == (
            ErrorCode.INVALID_MESSAGE,
            f"option 5 does not exist in poll {poll['id']}: it has options 0 to 1",
        )
        assert await counts(studio, poll["id"]) == [1, 1]


async def test_allow_multiple_counts_each_option_once_inside_a_batch(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio, options=["a", "b", "c"], allowMultiple=True)
        fan = studio.actor()
        replies = await one_turn(studio, [(fan, 0), (fan, 2), (fan, 0)], poll["id"])
        assert replies[0]["counted"] and replies[1]["counted"]
        assert replies[2][0] == ErrorCode.FORBIDDEN
        assert await counts(studio, poll["id"]) == [1, 0, 1]


async def test_a_gated_poll_refuses_viewers_and_counts_holders_in_one_batch(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio, gated=True)
        holder = studio.actor(Role.TOKEN_HOLDER)
        await studio.do(holder, VOTE, {"pollId": poll["id"], "optionIndex": 0})
        box = studio.services.polls.book.ballots
        before = box.calls
        votes = [(studio.actor(), 1), (studio.actor(Role.TOKEN_HOLDER), 1), (studio.actor(), 0)]
        votes.append((studio.actor(Role.PRODUCER, "producer-1"), 1))
        replies = await one_turn(studio, votes, poll["id"])
        assert replies[0][0] == replies[2][0] == ErrorCode.TOKEN_GATE_FAILED
        assert replies[1]["counted"] and replies[3]["counted"]
        assert box.calls == before + 1  # the refused votes never reached Redis
        assert await counts(studio, poll["id"]) == [1, 2]


async def test_a_poll_id_that_names_another_key_never_reaches_the_script(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        box = studio.services.polls.book.ballots
        before = box.calls
        replies = await one_turn(studio, [(studio.actor(Role.ARTIST), 0)], f"{poll['id']}:voters")
        assert replies[0][0] == ErrorCode.INVALID_MESSAGE and "does not exist" in replies[0][1]
        assert box.calls == before


async def test_a_burst_larger_than_a_batch_is_cut_into_calls(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        box = studio.services.polls.book.ballots
        before = box.calls
        replies = await one_turn(studio, [(studio.actor(), n % 2) for n in range(1200)], poll["id"])
        assert all(reply["counted"] for reply in replies)
        assert box.calls == before + 3  # BATCH_MAX is 500
        assert await counts(studio, poll["id"]) == [600, 600]


async def test_a_voter_that_stops_waiting_does_not_hold_up_the_batch(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        box = studio.services.polls.book.ballots
        gone = box.cast(studio.session_id, poll["id"], "leaver", 0)
        stays = box.cast(studio.session_id, poll["id"], "stayer", 1)
        gone.cancel()  # its connection closed; the vote was already sent
        assert await stays == 2
        assert await counts(studio, poll["id"]) == [1, 1]


async def test_an_unreachable_redis_fails_every_vote_of_the_batch_apart() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Redis.from_url(f"redis://127.0.0.1:{port}")
    try:
        box = BallotBox(client)
        answers = [box.cast("s1", "p1", f"u{n}", 0) for n in range(3)]
        errors = await asyncio.gather(*answers, return_exceptions=True)
        assert all(isinstance(error, RedisConnectionError) for error in errors), errors
        assert len({id(error) for error in errors}) == 3  # each voter its own exception
    finally:
        await client.aclose()


@given(
    poll_id=st.from_regex(POLL_ID, fullmatch=True),
    option=st.integers(0, 9),
    request_id=st.text(min_size=1, max_size=128),
    timestamp=st.integers(0, 2**53),
)
def test_a_receipt_is_byte_for_byte_the_encoded_reply(
    poll_id: str, option: int, request_id: str, timestamp: int
) -> None:
    made = Receipt(poll_id, option).reply(request_id, timestamp)
    payload = {"pollId": poll_id, "optionIndex": option, "counted": True}
    body = {"type": "poll.vote", "payload": payload, "timestamp": timestamp}
    assert made == orjson.dumps({**body, "requestId": request_id})
    general = orjson.loads(reply_envelope(MessageType.POLL_VOTE, request_id, payload))
    assert orjson.loads(made) == {**general, "timestamp": timestamp}


def test_a_receipt_is_the_reply_dict_and_shared_per_option() -> None:
    assert receipt("p1", 2) == {"pollId": "p1", "optionIndex": 2, "counted": True}
    assert receipt("p1", 2) is receipt("p1", 2) and receipt("p1", 1) is not receipt("p1", 2)
    stamp = orjson.loads(Receipt("p1", 2).reply("r"))["timestamp"]
    assert isinstance(stamp, int) and stamp > 1_700_000_000_000


async def _script_calls(bus: Bus) -> int | None:
    """EVALSHA/EVAL calls Redis has served so far (``None`` on a cluster: counted per node)."""
    if isinstance(bus.redis, RedisCluster):
        return None
    stats = await bus.redis.info("commandstats")
    names = ("cmdstat_evalsha", "cmdstat_eval")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in names)


async def live_poll(server: Any, options: list[str]) -> tuple[str, dict[str, Any]]:
    """A live session on ``server`` with a poll its artist opened: ``(session id, poll)``."""
    session = await server.live_session()
    status, poll = await server.call(
        "POST",
        f"/v1/vstudio/sessions/{session['id']}/polls",
        token=server.token(session["artistId"], "artist"),
        json={"question": "Which song?", "options": options},
    )
    assert status == 200, poll
    return str(session["id"]), poll


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_2000_concurrent_votes_over_websockets_are_counted_exactly(
    server_factory: ServerFactory, bus: Bus
) -> None:
    server = server_factory()
    sid, poll = await live_poll(server, ["a", "b", "c", "d"])
    tickets = TicketStore(bus.redis, ttl=300)
    voters = [f"fan-{uuid.uuid4().hex[:10]}" for _ in range(2000)]
    urls = []
    for voter in voters:
        ticket = await tickets.issue(Identity(voter, voter, Role.VIEWER), sid, Role.VIEWER)
        urls.append(f"{server.ws_url}?ticket={ticket}")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        gate = asyncio.Semaphore(100)

        async def connect(url: str) -> aiohttp.ClientWebSocketResponse:
            async with gate:
                return await http.ws_connect(url, autoping=True)

        sockets = await asyncio.gather(*(connect(url) for url in urls))
        try:
            await asyncio.sleep(1.0)  # the connects' joins settle

            async def vote(index: int, ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
                """One vote, and from every tenth voter a second one sent right after it."""
                sends = 2 if index % 10 == 0 else 1
                for attempt in range(sends):
                    option = (index + attempt) % 4
                    frame = {
                        "type": "poll.vote",
                        "requestId": f"v{index}-{attempt}",
                        "payload": {"pollId": poll["id"], "optionIndex": option},
                    }
                    await ws.send_bytes(orjson.dumps(frame))
                replies: list[Any] = []
                while len(replies) < sends:
                    message = await ws.receive(timeout=60)
                    assert message.type == aiohttp.WSMsgType.TEXT, message
                    data = orjson.loads(message.data)
                    if str(data.get("requestId", "")).startswith(f"v{index}-"):
                        replies.append(data)
                return replies

            calls_before = await _script_calls(bus)
            answers = await asyncio.gather(*(vote(i, ws) for i, ws in enumerate(sockets)))
            calls_after = await _script_calls(bus)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    acked: Counter[int] = Counter()
    for index, replies in enumerate(answers):
        counted = [r for r in replies if r["type"] == "poll.vote"]
        assert len(counted) == 1, replies  # exactly one of a voter's votes counts
        assert counted[0]["requestId"] == f"v{index}-0"  # the first sent, in arrival order
        acked[counted[0]["payload"]["optionIndex"]] += 1
        for refused in (r for r in replies if r["type"] != "poll.vote"):
            assert refused["payload"]["code"] == 4004, refused
    expected = [acked[option] for option in range(4)]
    assert sum(expected) == 2000
    status, stored = await server.call(
        "GET", f"/v1/vstudio/sessions/{sid}/polls/{poll['id']}", token=server.token("reader")
    )
    assert status == 200 and stored["results"] == expected, stored
    if calls_before is not None and calls_after is not None:
        # 2,200 votes took far fewer script calls than votes (tally broadcasts included)
        assert calls_after - calls_before < 2200 / 4, (calls_before, calls_after)


async def test_a_connections_replies_keep_its_frames_order_in_a_vote_burst(
    server_factory: ServerFactory, bus: Bus
) -> None:
    """Votes are answered from their batch, not awaited by the connection's handler; a frame
    sent right behind a vote still waits for the vote's reply, so every frame with a
    ``requestId`` gets exactly one reply, in the order sent, errors included."""
    server = server_factory()
    sid, poll = await live_poll(server, ["a", "b"])
    tickets = TicketStore(bus.redis, ttl=300)

    def vote(request_id: str, option: Any) -> bytes:
        payload = {"pollId": poll["id"], "optionIndex": option}
        return orjson.dumps({"type": "poll.vote", "requestId": request_id, "payload": payload})

    burst = [  # one connection's frames, sent without waiting: (frame, reply type, code)
        (vote("a1", 0), "poll.vote", None),
        (b'{"type":"ping","requestId":"a2"}', "pong", None),
        (vote("a3", True), "error", 4006),  # a flag is no index: refused, not coerced
        (vote("a4", 5), "error", 4006),  # no such option
        (vote("a5", 1), "error", 4004),  # this voter's vote is counted already
        (b'{"type":"poll.vote","requestId":"a6","payload":[]}', "error", 4006),
        (b'{"type":"session.leave","requestId":"a7"}', "session.leave", None),
    ]
    async with aiohttp.ClientSession() as http:
        sockets = []
        for name in ("fan-a", "fan-b", "fan-c"):
            ticket = await tickets.issue(Identity(name, name, Role.VIEWER), sid, Role.VIEWER)
            sockets.append(await http.ws_connect(f"{server.ws_url}?ticket={ticket}"))
        first, *others = sockets
        for frame, _, _ in burst:
            await first.send_bytes(frame)
        for index, ws in enumerate(others):
            await ws.send_bytes(vote(f"b{index}", index))

        async def replies(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[Any]:
            got: list[Any] = []
            while len(got) < count:
                message = await ws.receive(timeout=10)
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                data = orjson.loads(message.data)
                if "requestId" in data:
                    got.append(data)
            return got

        answers = await asyncio.gather(
            replies(first, len(burst)), *(replies(ws, 1) for ws in others)
        )
        closed = await first.receive(timeout=10)
        for ws in others:
            await ws.close()
    mine = answers[0]
    assert [reply["requestId"] for reply in mine] == [f"a{n}" for n in range(1, 8)], mine
    for reply, (_, kind, code) in zip(mine, burst, strict=True):
        assert reply["type"] == kind, reply
        if code is not None:
            assert reply["payload"]["code"] == code, reply
    assert "optionIndex" in mine[2]["payload"]["message"], mine[2]
    assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1000, closed
    for index, got in enumerate(answers[1:]):
        assert [(r["type"], r["requestId"]) for r in got] == [("poll.vote", f"b{index}")], got
    assert await counts_over_rest(server, sid, poll["id"]) == [2, 1]


async def counts_over_rest(server: Any, session_id: str, poll_id: str) -> list[int]:
    status, stored = await server.call(
        "GET", f"/v1/vstudio/sessions/{session_id}/polls/{poll_id}", token=server.token("reader")
    )
    assert status == 200, stored
    return list(stored["results"])
