"""TikTok events beyond chat, built with TikTokLive's own protobuf classes: diamonds as numbers,
like batches summed per window (bounded), emote chat, questions, the viewer count."""

from __future__ import annotations

import asyncio

from TikTokLive.events import GiftEvent

from broker import ledger
from broker.models import NormalizedChatMessage, PlatformEvent
from ingest.base import IngestItem
from ingest.tiktok_map import (
    LikeWindow,
    gift_event,
    map_emote_chat,
    question_event,
    viewers_event,
)
from tests.support.platforms.tiktok import FakeTikTok, tiktok_user
from tests.test_ingest_tiktok import adapter_for, until


def test_gift_diamonds_are_money_in_the_diamonds_unit() -> None:
    event = gift_event(FakeTikTok.gift(7, "Rose", repeat=30, end=True)[1])
    assert event is not None
    assert (event.amount_minor, event.currency, event.count) == (30, "DIAMONDS", 30)
    assert event.wire()["amountMinor"] == 30


def test_diamonds_are_tiktoklives_own_gift_value_without_its_guessed_rate() -> None:
    """TikTokLive's ``GiftEvent.value`` is repeats x diamonds x 0.005 USD (None mid-streak).
    The ledger keeps the diamonds and converts only with a configured rate."""
    for repeat, end in ((3, False), (12, True)):
        _, message = FakeTikTok.gift(8, "Galaxy", repeat=repeat, end=end)
        message.gift.diamond_count = 1000
        gift = GiftEvent().parse(bytes(message))  # what TikTokLive hands the adapter
        event = gift_event(gift)
        if gift.value is None:
            assert event is None
            continue
        assert event is not None and event.amount_minor == 12_000
        totals = {"tiktok": {"DIAMONDS": ledger.from_minor(12_000, "DIAMONDS")}}
        assert ledger.usd_estimate(totals, {"DIAMONDS": 0.005}) == gift.value == 60.0
        assert ledger.usd_estimate(totals, {"BITS": 0.01}) is None  # no rate: no guess


def test_like_batches_become_one_event_per_window() -> None:
    window = LikeWindow()
    alice = tiktok_user(1, "alice", "Alice")
    bob = tiktok_user(2, "bob", "Bob")
    for msg_id, (count, user) in enumerate([(15, alice), (5, bob), (10, alice)], start=1):
        window.add(FakeTikTok.like(msg_id, count, total=900 + msg_id, user=user)[1])
    event = window.flush()
    assert event is not None
    assert (event.kind, event.count, event.username, event.id) == (
        "like",
        30,
        "alice",
        "tiktok:1:likes",
    )
    assert event.detail == "2 people, 903 likes in total"
    assert window.flush() is None  # nothing since


def test_like_window_memory_is_bounded_but_every_like_counts() -> None:
    window = LikeWindow(max_users=3)
    for n in range(10):
        window.add(FakeTikTok.like(n + 1, 2, total=0, user=tiktok_user(n + 1, f"u{n}"))[1])
    assert len(window.by_user) == 3
    event = window.flush()
    assert event is not None and event.count == 20


def test_emote_chat_is_chat_with_images() -> None:
    message = map_emote_chat(FakeTikTok.emote_chat(40, ["7001", "7002"])[1])
    assert isinstance(message, NormalizedChatMessage)
    assert (message.id, message.text) == ("tiktok:40", ":7001: :7002:")
    assert message.emotes is not None
    assert [(e.url, e.positions) for e in message.emotes] == [
        ("https://p16.tiktok/7001", [(0, 5)]),
        ("https://p16.tiktok/7002", [(7, 12)]),
    ]


def test_question_and_viewer_count() -> None:
    question = question_event(FakeTikTok.question(41, 9001, "what is the next song?")[1])
    assert question is not None
    assert (question.kind, question.id, question.message, question.username) == (
        "question",
        "tiktok:question:9001",
        "what is the next song?",
        "fan_one",
    )
    viewers = viewers_event(FakeTikTok.viewers(42, 1234)[1])
    assert viewers is not None and (viewers.kind, viewers.count) == ("viewers", 1234)


async def test_emote_chat_questions_viewers_and_a_like_window_through_tiktoklive() -> None:
    """The adapter hands each of these to its mapping: dropping a listener fails here."""
    items: list[IngestItem] = []
    async with FakeTikTok().running() as fake:
        adapter = adapter_for(fake, like_window=0.2)
        task = asyncio.create_task(adapter.run(items.append))
        try:
            await until(lambda: adapter.status.state == "connected" and bool(fake.sockets), task)
            await fake.push(
                FakeTikTok.emote_chat(301, ["7001"]),
                FakeTikTok.question(302, 9002, "encore?"),
                FakeTikTok.viewers(303, 4321),
                FakeTikTok.like(304, 10, 100, user=tiktok_user(1, "alice")),
                FakeTikTok.like(305, 5, 105, user=tiktok_user(2, "bob")),
            )
            await until(lambda: len(items) >= 4, task)
            await asyncio.sleep(0.5)  # a second like event would be here by now
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    chat = [item for item in items if isinstance(item, NormalizedChatMessage)]
    events = {item.kind: item for item in items if isinstance(item, PlatformEvent)}
    assert [(c.id, c.text) for c in chat] == [("tiktok:301", ":7001:")]
    assert (events["question"].id, events["question"].message) == (
        "tiktok:question:9002",
        "encore?",
    )
    assert events["viewers"].count == 4321
    assert (events["like"].count, events["like"].username) == (15, "alice")
    assert len(items) == 4  # two like batches, one like event
