"""One ledger per session: platform money recorded once by its platform id, fans' tips beside
it, totals per platform and currency; and the bounded dedupe that guards the stream."""

from __future__ import annotations

import asyncio

from broker import Bus, ledger
from broker.bus import OutgoingEvent
from broker.models import MessageType, Platform, PlatformEvent, Role
from config import IngestSettings
from ingest.batching import to_outgoing
from ingest.runtime import Worker
from ingest.twitch import TwitchChat
from server.interactions.catalog import STATE_PARTS
from tests.support.platforms.twitch_irc import TwitchIrcServer, privmsg
from tests.support.studio import Studio, open_studio


def cheer(n: int, bits: int) -> PlatformEvent:
    return PlatformEvent(
        id=f"twitch:c{n}:cheer",
        platform=Platform.TWITCH,
        kind="cheer",
        username="fan",
        count=bits,
        amount_minor=bits,
        currency="BITS",
        timestamp=1,
    )


async def publish(bus: Bus, session_id: str, *events: PlatformEvent) -> list[str | None]:
    outgoing = [to_outgoing(event)[1] for event in events]
    return await bus.publish_many(session_id, "events", outgoing)


async def test_money_events_reach_the_ledger_once(bus: Bus, session_id: str) -> None:
    superchat = PlatformEvent(
        id="youtube:s1:superchat",
        platform=Platform.YOUTUBE,
        kind="superchat",
        username="Fan",
        amount_minor=500,
        currency="USD",
        message="love it",
        timestamp=2,
    )
    follow = PlatformEvent(
        id="twitch:f1", platform=Platform.TWITCH, kind="follow", username="fan", timestamp=3
    )
    await publish(bus, session_id, cheer(1, 100), superchat, follow)
    await publish(bus, session_id, cheer(1, 100), superchat)  # a redundant worker's copy
    rows = await ledger.entries(bus.redis, session_id)
    assert [(r["id"], r["amountMinor"], r["currency"]) for r in rows] == [
        ("twitch:c1:cheer", 100, "BITS"),
        ("youtube:s1:superchat", 500, "USD"),
    ]
    assert rows[1]["amount"] == 5.0 and rows[1]["message"] == "love it"
    assert await ledger.totals(bus.redis, session_id) == {
        "twitch": {"BITS": 100.0},
        "youtube": {"USD": 5.0},
    }


async def test_the_ledger_counts_once_even_after_dedupe_forgot(
    redis_url: str, bus: Bus, session_id: str
) -> None:
    forgetful = Bus(bus.redis, dedupe_cap=2)  # one id per generation: forgets at once
    for n in range(3):
        await publish(forgetful, session_id, cheer(n, 10))
    again = await publish(forgetful, session_id, cheer(0, 10))
    assert again != [None]  # the stream got it again: dedupe had forgotten it
    assert await ledger.totals(bus.redis, session_id) == {"twitch": {"BITS": 30.0}}
    assert len(await ledger.entries(bus.redis, session_id)) == 3


async def test_two_redundant_workers_on_a_cheer_stream_give_one_entry_per_cheer(
    bus: Bus, session_id: str
) -> None:
    lines = [privmsg(f"cheer-{n}", f"Cheer{n + 1} go", bits=n + 1) for n in range(40)]
    async with TwitchIrcServer([lines, lines]) as server:
        settings = IngestSettings(twitch_irc_url=server.url, batch_interval_ms=5, heartbeat_ttl=5)
        workers = [Worker(TwitchChat("dallas", settings), bus, session_id, settings) for _ in "ab"]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        deadline = asyncio.get_running_loop().time() + 10
        while sum(w.stats.received for w in workers) < 160:  # chat + cheer per line, twice
            assert asyncio.get_running_loop().time() < deadline, "the workers did not read it all"
            await asyncio.sleep(0.02)
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)
    rows = await ledger.entries(bus.redis, session_id)
    assert sorted(r["id"] for r in rows) == sorted(f"twitch:cheer-{n}:cheer" for n in range(40))
    assert await ledger.totals(bus.redis, session_id) == {
        "twitch": {"BITS": float(sum(range(1, 41)))}
    }


async def test_a_cheer_sent_in_another_shared_chat_channel_is_that_channels_money(
    bus: Bus, session_id: str
) -> None:
    """Shared chat shows channel B's cheer in channel A too, under one id: B's artist got the
    bits. Read from A it is chat, not A's money; read from B as well, it counts once."""
    seen_in_a = cheer(7, 500).model_copy(update={"source_channel": "222"})
    assert (await publish(bus, session_id, seen_in_a))[0] is not None  # the stream shows it
    assert await ledger.totals(bus.redis, session_id) == {}
    assert await publish(bus, session_id, cheer(7, 500)) == [None]  # B's copy: a duplicate...
    assert await ledger.totals(bus.redis, session_id) == {"twitch": {"BITS": 500.0}}  # ...counted
    await publish(bus, session_id, cheer(7, 500), seen_in_a)
    assert len(await ledger.entries(bus.redis, session_id)) == 1


async def test_dedupe_memory_is_bounded_by_the_cap(bus: Bus, session_id: str) -> None:
    capped = Bus(bus.redis, dedupe_cap=100)
    events = [OutgoingEvent("chat.message", {"n": n}, dedupe_id=f"twitch:m{n}") for n in range(500)]
    for start in range(0, 500, 50):
        await capped.publish_many(session_id, "chat", events[start : start + 50])
    remembered, used = await capped.dedupe_memory(session_id)
    assert remembered <= 100
    # the last ids are still remembered, and dropped as duplicates
    assert await capped.publish_many(session_id, "chat", events[-10:]) == [None] * 10
    assert await capped.stream_id_of(session_id, "twitch:m499") is not None
    assert used > 0


async def test_dedupe_forgets_after_two_windows(bus: Bus, session_id: str) -> None:
    quick = Bus(bus.redis, dedupe_ttl=1)
    event = OutgoingEvent("chat.message", {"n": 1}, dedupe_id="twitch:w1")
    assert (await quick.publish_many(session_id, "chat", [event]))[0] is not None
    assert await quick.publish_many(session_id, "chat", [event]) == [None]
    await asyncio.sleep(1.05)
    other = OutgoingEvent("chat.message", {"n": 2}, dedupe_id="twitch:w2")
    await quick.publish_many(session_id, "chat", [other])  # rotates: w1 is now "previous"
    assert await quick.publish_many(session_id, "chat", [event]) == [None]
    await asyncio.sleep(1.05)
    await quick.publish_many(session_id, "chat", [other])  # rotates again: w1 is gone
    assert (await quick.publish_many(session_id, "chat", [event]))[0] is not None


async def test_session_state_has_totals_per_platform_and_a_usd_estimate_only_with_rates(
    bus: Bus,
) -> None:
    async def state_of(studio: Studio) -> dict[str, object]:
        state: dict[str, object] = {}
        for part in STATE_PARTS:
            state.update(await part(studio.services, studio.session_id))
        return state

    async with open_studio(bus) as studio:
        fan = studio.actor(Role.VIEWER, "fan-1", request_id="tip-1")
        await studio.do(fan, MessageType.TIP_SEND, {"amount": 2.5, "currency": "USD"})
        await publish(bus, studio.session_id, cheer(1, 300))
        state = await state_of(studio)
        assert state["tipTotals"] == {"USD": 2.5}  # fans' tips, as before
        assert state["ledgerTotals"] == {"audifi": {"USD": 2.5}, "twitch": {"BITS": 300.0}}
        assert state["ledgerUsd"] == {"estimate": 5.5, "rates": {"BITS": 0.01}}
        gift = PlatformEvent(
            id="tiktok:9",
            platform=Platform.TIKTOK,
            kind="gift",
            username="fan",
            amount_minor=10,
            currency="DIAMONDS",
            timestamp=1,
        )
        await publish(bus, studio.session_id, gift)
        state = await state_of(studio)
        assert "ledgerUsd" not in state  # DIAMONDS has no rate: no guessed total
        rows = await ledger.entries(bus.redis, studio.session_id)
        assert [(r["platform"], r["kind"], r["amountMinor"]) for r in rows] == [
            ("audifi", "tip", 250),
            ("twitch", "cheer", 300),
            ("tiktok", "gift", 10),
        ]
