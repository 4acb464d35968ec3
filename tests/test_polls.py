"""Poll rules against a real Redis, through ``ActionTable.perform`` as every transport does."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable

import pytest

from broker import Bus, connect
from broker.models import ErrorCode, MessageType, PollVote, ProtocolError, Role, is_poll_tally
from server.interactions import polls
from server.interactions.catalog import STATE_PARTS
from tests.support.studio import Studio, attach, open_studio

CREATE = MessageType.POLL_CREATE
VOTE = MessageType.POLL_VOTE


async def new_poll(studio: Studio, **fields: object) -> dict:
    spec = {"question": "Next song?", "options": ["Intro", "Outro"], **fields}
    return await studio.do(studio.actor(Role.PRODUCER, "producer-1"), CREATE, spec)


async def refused(coro: Awaitable[object]) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        await coro
    return caught.value


async def test_create_vote_and_results_aligned_with_options(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio, options=["a", "b", "c"])
        assert poll["status"] == "active" and poll["results"] == [0, 0, 0]
        for option in (2, 2, 0):
            reply = await studio.do(
                studio.actor(), VOTE, {"pollId": poll["id"], "optionIndex": option}
            )
            assert reply == {"pollId": poll["id"], "optionIndex": option, "counted": True}
        stored = await studio.services.polls.book.get(studio.session_id, poll["id"])
        assert stored is not None and stored.results == [1, 0, 2]
        [created] = await studio.events("poll.create")
        assert created.payload["question"] == "Next song?"


async def test_viewer_cannot_create_and_one_active_poll_per_session(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        error = await refused(
            studio.do(studio.actor(), CREATE, {"question": "q", "options": ["a", "b"]})
        )
        assert error.code == ErrorCode.FORBIDDEN
        first = await new_poll(studio)
        error = await refused(new_poll(studio))
        assert error.code == ErrorCode.INVALID_MESSAGE
        assert first["id"] in error.message and "still active" in error.message
        await studio.do(studio.actor(Role.ARTIST), MessageType.POLL_END, {"pollId": first["id"]})
        assert (await new_poll(studio))["status"] == "active"


async def test_one_vote_per_user_and_the_repeat_says_it_was_counted(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        fan = studio.actor()
        await studio.do(fan, VOTE, {"pollId": poll["id"], "optionIndex": 0})
        for option in (0, 1):
            error = await refused(
                studio.do(fan, VOTE, {"pollId": poll["id"], "optionIndex": option})
            )
            assert error.code == ErrorCode.FORBIDDEN and "already counted" in error.message
        stored = await studio.services.polls.book.get(studio.session_id, poll["id"])
        assert stored is not None and stored.results == [1, 0]


async def test_allow_multiple_counts_each_option_once(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio, options=["a", "b", "c"], allowMultiple=True)
        fan = studio.actor()
        for option in (0, 2):
            await studio.do(fan, VOTE, {"pollId": poll["id"], "optionIndex": option})
        error = await refused(studio.do(fan, VOTE, {"pollId": poll["id"], "optionIndex": 2}))
        assert "already counted" in error.message
        stored = await studio.services.polls.book.get(studio.session_id, poll["id"])
        assert stored is not None and stored.results == [1, 0, 1]


async def test_bad_option_unknown_poll_and_ended_poll_are_clear_errors(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        error = await refused(
            studio.do(studio.actor(), VOTE, {"pollId": poll["id"], "optionIndex": 5})
        )
        assert error.code == ErrorCode.INVALID_MESSAGE and "options 0 to 1" in error.message
        error = await refused(studio.do(studio.actor(), VOTE, {"pollId": "nope", "optionIndex": 0}))
        assert "does not exist" in error.message
        await studio.do(studio.actor(Role.ARTIST), MessageType.POLL_END, {"pollId": poll["id"]})
        error = await refused(
            studio.do(studio.actor(), VOTE, {"pollId": poll["id"], "optionIndex": 0})
        )
        assert error.code == ErrorCode.INVALID_MESSAGE and "has ended" in error.message
        error = await refused(
            studio.do(studio.actor(Role.ARTIST), MessageType.POLL_END, {"pollId": poll["id"]})
        )
        assert "has ended" in error.message


async def test_update_question_only_before_the_first_vote_duration_any_time(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        staff = studio.actor(Role.PRODUCER, "producer-1")
        update = MessageType.POLL_UPDATE
        changed = await studio.do(
            staff, update, {"pollId": poll["id"], "question": "Encore?", "options": ["y", "n", "?"]}
        )
        assert changed["question"] == "Encore?" and changed["results"] == [0, 0, 0]
        await studio.do(studio.actor(), VOTE, {"pollId": poll["id"], "optionIndex": 2})
        error = await refused(studio.do(staff, update, {"pollId": poll["id"], "question": "x"}))
        assert error.code == ErrorCode.INVALID_MESSAGE and "before the first vote" in error.message
        longer = await studio.do(staff, update, {"pollId": poll["id"], "duration": 600})
        assert longer["endsAt"] == longer["createdAt"] + 600_000 and longer["results"] == [0, 0, 1]
        updates = await studio.events("poll.update")
        edits = [e.payload for e in updates if not is_poll_tally(e.payload)]
        assert [edit["question"] for edit in edits] == ["Encore?", "Encore?"]
        assert [edit["options"] for edit in edits] == [["y", "n", "?"]] * 2
        assert edits[1]["endsAt"] == longer["endsAt"] and edits[1]["id"] == poll["id"]
        await asyncio.sleep(0.3)  # the vote's tally, also a poll.update, is told apart
        tallies = [
            e.payload for e in await studio.events("poll.update") if is_poll_tally(e.payload)
        ]
        assert tallies[-1] == {"pollId": poll["id"], "results": [0, 0, 1], "totalVotes": 1}


async def test_end_publishes_the_poll_and_final_results_once(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        await studio.do(studio.actor(), VOTE, {"pollId": poll["id"], "optionIndex": 1})
        ended = await studio.do(
            studio.actor(Role.ARTIST), MessageType.POLL_END, {"pollId": poll["id"]}
        )
        assert ended["status"] == "ended" and ended["results"] == [0, 1] and ended["endedAt"]
        [end] = await studio.events("poll.end")
        finals = await studio.events("poll.results")  # poll.results is only the final tally
        assert end.payload["results"] == [0, 1]
        assert [f.payload for f in finals] == [
            {"pollId": poll["id"], "results": [0, 1], "totalVotes": 1, "final": True}
        ]


async def test_results_are_kept_after_the_end_and_listed_in_session_state(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        first = await new_poll(studio)
        await studio.do(studio.actor(), VOTE, {"pollId": first["id"], "optionIndex": 0})
        await studio.do(studio.actor(Role.ARTIST), MessageType.POLL_END, {"pollId": first["id"]})
        second = await new_poll(studio, question="Again?")
        state: dict = {}
        for part in STATE_PARTS:
            state.update(await part(studio.services, studio.session_id))
        assert state["activePoll"]["id"] == second["id"]
        listed = {poll["id"]: poll for poll in state["polls"]}
        assert listed[first["id"]]["status"] == "ended"
        assert listed[first["id"]]["results"] == [1, 0]


async def test_results_are_throttled_with_a_trailing_flush(bus: Bus) -> None:
    async with open_studio(bus, poll_results_per_second=4, poll_results_busy_ms=0) as studio:
        poll = await new_poll(studio)
        started = asyncio.get_running_loop().time()
        for _ in range(60):
            await studio.do(studio.actor(), VOTE, {"pollId": poll["id"], "optionIndex": 0})
            await asyncio.sleep(0.01)
        last_vote = asyncio.get_running_loop().time()
        await asyncio.sleep(0.6)
        assert not await studio.events("poll.results")  # live tallies are poll.update
        results = await studio.events("poll.update")
        assert all(set(r.payload) == {"pollId", "results", "totalVotes"} for r in results)
        elapsed = last_vote - started
        # at most one broadcast per 250 ms window (plus the first), and the last one is exact
        assert 2 <= len(results) <= elapsed / 0.25 + 2
        assert results[-1].payload["results"] == [60, 0]
        assert results[-1].payload["totalVotes"] == 60


async def vote_steadily(studio: Studio, poll_id: str, ms: float) -> tuple[float, float, int]:
    """A vote every ~10 ms for ``ms``: the first and last vote's times (ms) and the count."""
    first_vote = last_vote = time.time() * 1000
    votes = 0
    while last_vote < first_vote + ms:
        await studio.do(studio.actor(), VOTE, {"pollId": poll_id, "optionIndex": 0})
        votes += 1
        await asyncio.sleep(0.01)
        last_vote = time.time() * 1000
    return first_vote, last_vote, votes


async def test_a_vote_storm_paces_its_tallies_and_ends_with_a_prompt_one(bus: Bus) -> None:
    """While votes keep coming a tally waits until a vote is ``busy`` old; once they pause for
    ``quiet``, one goes at once (issue 17: each tally is a write to every viewer)."""
    async with open_studio(
        bus, poll_results_per_second=20, poll_results_busy_ms=1000, poll_results_quiet_ms=100
    ) as studio:
        poll = await new_poll(studio)
        first_vote, last_vote, votes = await vote_steadily(studio, poll["id"], 1200)
        await asyncio.sleep(0.5)
        results = await studio.events("poll.update")
        stamps = [int(r.id.split("-")[0]) for r in results]
        during = [stamp for stamp in stamps if stamp < last_vote]
        assert during and during[0] >= first_vote + 950  # not at 20 a second
        assert all(later - earlier >= 950 for earlier, later in itertools.pairwise(during))
        assert results[-1].payload["totalVotes"] == votes
        assert stamps[-1] - last_vote < 300  # the storm's end shows after ``quiet``, not ``busy``


async def test_a_storm_that_ends_just_after_a_busy_tally_gets_its_final_one_promptly(
    bus: Bus,
) -> None:
    """A tally forced by ``busy`` does not hold the broadcast slot for a whole interval: the
    storm's last votes, a moment later, show ``quiet`` after them (``bench/votes.py`` saw the
    final tally wait up to the 250 ms slot when its 1 s of votes ended just after the 1 s tally)."""
    async with open_studio(
        bus, poll_results_per_second=2, poll_results_busy_ms=600, poll_results_quiet_ms=100
    ) as studio:
        poll = await new_poll(studio)
        # past the busy tally at ~600 ms, then stop
        _, last_vote, votes = await vote_steadily(studio, poll["id"], 680)
        await asyncio.sleep(0.8)
        results = await studio.events("poll.update")
        stamps = [int(r.id.split("-")[0]) for r in results]
        assert [stamp for stamp in stamps if stamp < last_vote]  # the busy tally went
        assert len(stamps) == 2  # and the final one; none more (the slot still paces them)
        assert results[-1].payload["totalVotes"] == votes
        # quiet (100 ms) after the last vote, not the rest of a 500 ms slot
        assert stamps[-1] - last_vote < 300, (stamps, last_vote)


async def test_building_session_state_learns_whether_polls_are_gated(
    bus: Bus, redis_url: str
) -> None:
    """Another process learns the flag from the state its viewers get, before any vote: a
    storm's first votes start at once instead of each waiting in a task for one read."""
    other = Bus(await connect(redis_url))
    async with open_studio(bus) as studio:
        second = await attach(other, studio.session, process_id="p2")
        poll = await new_poll(studio)
        book = second.services.polls.book
        assert book.gated_now(studio.session_id, poll["id"]) is None
        state = await polls.polls_state(second.services, studio.session_id)
        assert state["activePoll"]["id"] == poll["id"]
        assert book.gated_now(studio.session_id, poll["id"]) is False
        await second.close()
    await other.redis.aclose()


async def test_a_session_that_ended_refuses_polls_and_votes(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        await studio.store.end(studio.session_id, ended_by="test")
        error = await refused(
            studio.do(studio.actor(), VOTE, {"pollId": poll["id"], "optionIndex": 0})
        )
        assert error.code == ErrorCode.SESSION_ENDED
        error = await refused(new_poll(studio))
        assert error.code == ErrorCode.SESSION_ENDED


async def test_many_votes_from_two_processes_counted_exactly_once(bus: Bus, redis_url: str) -> None:
    other = Bus(await connect(redis_url))
    async with open_studio(bus) as studio:
        second = await attach(other, studio.session, process_id="p2")
        poll = await new_poll(studio, options=["a", "b", "c"])
        voters = [studio.actor() for _ in range(300)]

        async def cast(index: int, attempt: int) -> str:
            where = studio if (index + attempt) % 2 else second
            vote = {"pollId": poll["id"], "optionIndex": index % 3}
            try:
                await where.do(voters[index], VOTE, vote)
                return "counted"
            except ProtocolError as error:
                return "repeat" if "already counted" in error.message else error.message

        # every voter votes twice, on both processes, concurrently
        outcomes = await asyncio.gather(
            *(cast(index, attempt) for index in range(300) for attempt in (0, 1))
        )
        assert outcomes.count("counted") == 300 and outcomes.count("repeat") == 300
        stored = await studio.services.polls.book.get(studio.session_id, poll["id"])
        assert stored is not None and stored.results == [100, 100, 100]
        await asyncio.sleep(0.5)
        last = (await studio.events("poll.update"))[-1]
        assert last.payload["results"] == [100, 100, 100]
        await second.close()
    await other.redis.aclose()


async def test_auto_end_happens_exactly_once_with_two_processes_racing(
    bus: Bus, redis_url: str
) -> None:
    other = Bus(await connect(redis_url))
    async with open_studio(bus) as studio:
        second = await attach(other, studio.session, process_id="p2")
        poll = await new_poll(studio)
        book = studio.services.polls.book
        await studio.do(studio.actor(), VOTE, {"pollId": poll["id"], "optionIndex": 1})
        # make it due now, then let both processes' loops and direct calls race to end it
        await bus.redis.hset(polls.poll_key(studio.session_id, poll["id"]), "endsAt", 1)
        await bus.redis.zadd(polls.DEADLINES, {f"{studio.session_id}/{poll['id']}": 1})
        direct = await asyncio.gather(
            *(
                services.polls.book.end(studio.session_id, poll["id"], expired=True)
                for services in (studio.services, second.services) * 5
            )
        )
        await asyncio.sleep(0.3)
        ended_events = await studio.events("poll.end")
        assert len(ended_events) == 1
        assert sum(result is not None for result in direct) <= 1
        final = await studio.events("poll.results")
        assert len(final) == 1 and final[0].payload["results"] == [0, 1]
        assert final[0].payload["final"] is True
        stored = await book.get(studio.session_id, poll["id"])
        assert stored is not None and stored.status == "ended" and stored.ended_at == 1
        await second.close()
    await other.redis.aclose()


async def test_a_poll_with_a_duration_ends_by_itself(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio, duration=5)
        assert poll["endsAt"] == poll["createdAt"] + 5000
        # durations start at 5 s; bring endsAt closer directly to keep the test short
        key = polls.poll_key(studio.session_id, poll["id"])
        await bus.redis.hset(key, "endsAt", poll["createdAt"] + 300)
        await bus.redis.zadd(polls.DEADLINES, {f"{studio.session_id}/{poll['id']}": 0})
        for _ in range(30):
            if await studio.events("poll.end"):
                break
            await asyncio.sleep(0.1)
        [end] = await studio.events("poll.end")
        assert end.payload["status"] == "ended"
        assert end.payload["endedAt"] == poll["createdAt"] + 300
        with pytest.raises(ProtocolError):
            await studio.services.polls.book.vote(
                studio.session_id, "late", PollVote(poll_id=poll["id"], option_index=0)
            )


async def test_a_poll_id_that_names_another_key_is_a_clear_error(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        await studio.do(studio.actor(), VOTE, {"pollId": poll["id"], "optionIndex": 0})
        for bad in (f"{poll['id']}:voters", f"{poll['id']}:broadcast", "a b", "{x}"):
            error = await refused(
                studio.do(studio.actor(), VOTE, {"pollId": bad, "optionIndex": 0})
            )
            assert error.code == ErrorCode.INVALID_MESSAGE and "does not exist" in error.message
            error = await refused(
                studio.do(studio.actor(Role.ARTIST), MessageType.POLL_END, {"pollId": bad})
            )
            assert error.code == ErrorCode.INVALID_MESSAGE


async def test_updated_options_must_be_distinct_like_created_ones(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        poll = await new_poll(studio)
        staff = studio.actor(Role.PRODUCER, "producer-1")
        error = await refused(
            studio.do(
                staff, MessageType.POLL_UPDATE, {"pollId": poll["id"], "options": ["Yes", "yes "]}
            )
        )
        assert error.code == ErrorCode.INVALID_MESSAGE and "distinct" in error.message
        stored = await studio.services.polls.book.get(studio.session_id, poll["id"])
        assert stored is not None and stored.options == ["Intro", "Outro"]


async def test_final_results_come_after_a_broadcast_claimed_before_the_end(bus: Bus) -> None:
    async with open_studio(bus, start=False, poll_results_busy_ms=0) as studio:
        poll = await new_poll(studio)
        await studio.do(studio.actor(), VOTE, {"pollId": poll["id"], "optionIndex": 0})
        book = studio.services.polls.book
        claim = await book.claim_broadcast(studio.session_id, poll["id"])
        assert claim[0] == "go"

        async def slow_broadcast() -> None:
            """A process that claimed the slot, then was slow to publish."""
            await asyncio.sleep(0.1)
            payload = {"pollId": poll["id"], "results": claim[2], "totalVotes": claim[1]}
            await bus.publish(studio.session_id, "polls", "poll.update", payload)

        await asyncio.gather(slow_broadcast(), book.end(studio.session_id, poll["id"]))
        results = await studio.events("poll.update", "poll.results")
        assert [r.type for r in results] == ["poll.update", "poll.results"]
