"""Reactions against a real Redis: the allowed set, toggles, bursts summed across processes."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from broker import Bus, connect, keys
from broker.models import ErrorCode, MessageType, ProtocolError, SessionUpdate
from server.interactions import reactions
from server.interactions.reactions import allowed_emoji
from tests.support.studio import attach, open_studio

REACT = MessageType.REACTION_SEND


def test_allowed_emoji_accepts_with_or_without_variation_selector() -> None:
    assert allowed_emoji("❤", ["🔥", "❤️"]) == "❤️"
    assert allowed_emoji("🔥", ["🔥", "❤️"]) == "🔥"
    with pytest.raises(ProtocolError) as caught:
        allowed_emoji("🍕", ["🔥", "❤️"])
    assert caught.value.code == ErrorCode.INVALID_MESSAGE
    assert "🔥 ❤️" in caught.value.message


async def test_reactions_are_summed_into_one_burst_per_window(bus: Bus) -> None:
    async with open_studio(bus, reaction_window_ms=200) as studio:
        for emoji in ["🔥"] * 5 + ["👏"] * 2:
            assert (await studio.do(studio.actor(), REACT, {"emoji": emoji}))["emoji"] == emoji
        await asyncio.sleep(0.5)
        bursts = await studio.events("reaction.burst")
        assert bursts and all(b.payload["window"] == 200 for b in bursts)
        total: Counter[str] = Counter()
        for burst in bursts:
            total.update(burst.payload["counts"])
        assert total == {"🔥": 5, "👏": 2}
        # quiet windows publish nothing
        await asyncio.sleep(0.5)
        assert len(await studio.events("reaction.burst")) == len(bursts)


async def test_reactions_from_two_processes_are_summed_once(bus: Bus, redis_url: str) -> None:
    other = Bus(await connect(redis_url))
    async with open_studio(bus, reaction_window_ms=100) as studio:
        second = await attach(other, studio.session, process_id="p2", reaction_window_ms=100)
        sent: Counter[str] = Counter()
        for round_ in range(6):
            batch = []
            for index in range(40):
                emoji = ["🔥", "🎉", "💯"][index % 3]
                where = studio if index % 2 else second
                batch.append(where.do(where.actor(), REACT, {"emoji": emoji}))
                sent[emoji] += 1
            await asyncio.gather(*batch)
            await asyncio.sleep(0.03 * round_)
        await asyncio.sleep(0.4)
        await second.close()
        bursts = await studio.events("reaction.burst")
        total: Counter[str] = Counter()
        for burst in bursts:
            total.update(burst.payload["counts"])
        assert total == sent
        # both processes counted into the same windows, yet each window was published once
        assert len(bursts) < 12
    await other.redis.aclose()


async def test_a_count_after_its_window_closed_goes_to_the_next_window(bus: Bus) -> None:
    async with open_studio(bus, start=False, reaction_window_ms=1000) as studio:
        windows = studio.services.reactions
        await windows.count(studio.session_id, "🔥")
        [(session, window)] = windows.pending
        assert await windows.close(session, window) == {"🔥": 1}
        assert await windows.close(session, window) is None  # a window is closed once
        # a count computed for the closed window (in flight while it closed) lands in the next
        await windows._count(
            keys=[
                keys.reaction_window(session, window),
                keys.reaction_window_done(session, window),
                keys.reaction_window(session, window + 1),
                keys.reaction_window_done(session, window + 1),
            ],
            args=["🎉", 1000],
        )
        assert await windows.close(session, window + 1) == {"🎉": 1}


async def test_reactions_off_and_unknown_emoji_are_refused(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        with pytest.raises(ProtocolError) as caught:
            await studio.do(studio.actor(), REACT, {"emoji": "🍕"})
        assert "not allowed" in caught.value.message
        await studio.store.update(studio.session_id, SessionUpdate(reactions_enabled=False))
        with pytest.raises(ProtocolError) as caught:
            await studio.do(studio.actor(), REACT, {"emoji": "🔥"})
        assert caught.value.code == ErrorCode.FORBIDDEN and "turned off" in caught.value.message


async def test_a_count_delayed_past_two_windows_still_lands_in_an_open_one(bus: Bus) -> None:
    """A reaction whose round trip waited long enough that its window and the next one both
    closed is counted into the first window still open, and published from there."""
    async with open_studio(bus, reaction_window_ms=1000, start=False) as studio:
        sid = studio.session_id
        counter = studio.services.reactions
        now = reactions.now_ms() // 1000
        for window in range(now - 1, now + 2):  # these windows were closed meanwhile
            await bus.redis.set(keys.reaction_window_done(sid, window), "1", px=60_000)
        await counter.count(sid, "🔥")
        [(_, window)] = counter.pending
        assert window >= now + 2
        assert await counter.close(sid, window) == {"🔥": 1}
