"""YouTube liveChatMessages resources shaped as the API reference gives them: Super Chats and
Super Stickers with their money, gifted memberships counted once, polls, bans by channel id."""

from __future__ import annotations

import pytest

from broker import Bus
from broker.bus import OutgoingEvent
from broker.models import ChatDelete, NormalizedChatMessage, Platform, PlatformEvent
from ingest.youtube_map import IGNORED_TYPES, map_chat_item
from server.interactions.moderation import delete_from_history
from tests.support.platforms.youtube import chat_item


def event_of(item: dict[str, object]) -> PlatformEvent:
    [event, *_] = map_chat_item(item)
    assert isinstance(event, PlatformEvent)
    return event


def test_super_chat_in_yen_has_no_minor_unit() -> None:
    event = event_of(
        chat_item(
            "s2",
            "superChatEvent",
            superChatDetails={
                "amountMicros": "1000000000",
                "currency": "JPY",
                "amountDisplayString": "¥1,000",
                "tier": 3,
            },
        )
    )
    assert (event.amount_minor, event.currency, event.tier) == (1000, "JPY", "3")
    assert event.user_id == "UCfan"


def test_super_sticker_is_money_too() -> None:
    event = event_of(
        chat_item(
            "st1",
            "superStickerEvent",
            superStickerDetails={
                "superStickerMetadata": {
                    "stickerId": "sticker-1",
                    "altText": "A dancing cat",
                    "language": "en",
                },
                "amountMicros": "2000000",
                "currency": "EUR",
                "amountDisplayString": "€2.00",
                "tier": 1,
            },
        )
    )
    assert (event.kind, event.amount_minor, event.currency) == ("supersticker", 200, "EUR")
    assert event.detail == "€2.00 A dancing cat" and event.id == "youtube:st1:supersticker"


def test_an_odd_amount_is_no_money_rather_than_a_guess() -> None:
    event = event_of(
        chat_item("s3", "superChatEvent", superChatDetails={"amountDisplayString": "$5.00"})
    )
    assert event.amount_minor is None and event.currency is None


def test_gifted_memberships_count_once() -> None:
    gifting = event_of(
        chat_item(
            "g1",
            "membershipGiftingEvent",
            membershipGiftingDetails={
                "giftMembershipsCount": 3,
                "giftMembershipsLevelName": "Gold",
            },
        )
    )
    received = [
        event_of(
            chat_item(
                f"r{n}",
                "giftMembershipReceivedEvent",
                author=f"Fan{n}",
                channel=f"UC{n}",
                giftMembershipReceivedDetails={
                    "memberLevelName": "Gold",
                    "gifterChannelId": "UCfan",
                    "associatedMembershipGiftingMessageId": "g1",
                },
            )
        )
        for n in range(3)
    ]
    assert gifting.kind == "membergift" and gifting.group_id == "youtube:g1"
    assert [(e.kind, e.recipient, e.group_id) for e in received] == [
        ("giftsub", f"Fan{n}", "youtube:g1") for n in range(3)
    ]
    assert sum(e.count or 0 for e in [gifting, *received]) == 3


def test_milestone_keeps_months_and_comment() -> None:
    event, chat = map_chat_item(
        chat_item(
            "ms1",
            "memberMilestoneChatEvent",
            memberMilestoneChatDetails={
                "userComment": "a year!",
                "memberMonth": 12,
                "memberLevelName": "Gold",
            },
        )
    )
    assert isinstance(event, PlatformEvent) and isinstance(chat, NormalizedChatMessage)
    assert (event.kind, event.months, event.message) == ("milestone", 12, "a year!")


def test_poll() -> None:
    event = event_of(
        chat_item(
            "p1",
            "pollEvent",
            pollDetails={
                "metadata": {
                    "options": [
                        {"optionText": "Track A", "tally": "12"},
                        {"optionText": "Track B", "tally": "30"},
                    ],
                    "questionText": "Next song?",
                    "status": "active",
                }
            },
        )
    )
    assert (event.kind, event.message) == ("poll", "Next song?")
    assert event.detail == "active · Track A: 12; Track B: 30"


@pytest.mark.parametrize("kind", sorted(IGNORED_TYPES))
def test_ignored_types_map_to_nothing(kind: str) -> None:
    assert map_chat_item(chat_item("i1", kind)) == []


async def test_a_ban_removes_that_channel_not_its_namesake(bus: Bus, session_id: str) -> None:
    same_name = [
        chat_item("a1", text="troll", author="@sam", channel="UCtroll"),
        chat_item("a2", text="nice", author="@sam", channel="UCnice"),
    ]
    messages = [m for item in same_name for m in map_chat_item(item)]
    await bus.publish_many(
        session_id,
        "chat",
        [OutgoingEvent("chat.message", m.wire(), dedupe_id=m.id) for m in messages],
    )
    [ban] = map_chat_item(
        chat_item(
            "b1",
            "userBannedEvent",
            userBannedDetails={
                "bannedUserDetails": {"channelId": "UCtroll", "displayName": "@sam"},
                "banType": "permanent",
            },
        )
    )
    assert isinstance(ban, ChatDelete) and ban.platform is Platform.YOUTUBE
    assert await delete_from_history(bus, session_id, ban) == 1
    left = (await bus.replay(session_id, "0-0")).events
    assert [event.payload["userId"] for event in left] == ["UCnice"]
