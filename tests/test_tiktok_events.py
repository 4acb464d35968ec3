"""TikTok events beyond chat, built with TikTokLive's own protobuf classes: diamonds as numbers,
like batches summed per window (bounded), emote chat, questions, the viewer count."""

from __future__ import annotations

from broker.models import NormalizedChatMessage
from ingest.tiktok_map import (
    LikeWindow,
    gift_event,
    map_emote_chat,
    question_event,
    viewers_event,
)
from tests.support.platforms.tiktok import FakeTikTok, tiktok_user


def test_gift_diamonds_are_money_in_the_diamonds_unit() -> None:
    event = gift_event(FakeTikTok.gift(7, "Rose", repeat=30, end=True)[1])
    assert event is not None
    assert (event.amount_minor, event.currency, event.count) == (30, "DIAMONDS", 30)
    assert event.wire()["amountMinor"] == 30


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
