"""EventSub beyond chat: channel.chat.notification and chat.message's cheer, reply, type and
source_* fields, through the real twitchio client against the local EventSub server. Payload
shapes follow Twitch's EventSub reference."""

from __future__ import annotations

import asyncio

from broker import Bus, ledger
from ingest.runtime import Worker
from ingest.twitch_eventsub import IGNORED_NOTICE_TYPES, NOTICE_TYPE_KINDS, TwitchEventSub
from tests.support.platforms.twitch_eventsub import (
    EventSubServer,
    chat_event,
    notification_event,
    text,
)
from tests.test_ingest_twitch_eventsub import WORKER, collect, eventsub_settings

GIFT = {"sub_tier": "1000", "duration_months": 1, "cumulative_total": None}


def recipient(n: int) -> dict[str, object]:
    return {
        "recipient_user_id": str(n),
        "recipient_user_name": f"Fan{n}",
        "recipient_user_login": f"fan{n}",
    }


async def test_notifications_cheers_replies_and_shared_chat(bus: Bus, session_id: str) -> None:
    bomb = [
        notification_event(
            "bomb-1",
            "community_sub_gift",
            {"id": "cg-1", "total": 3, "sub_tier": "1000", "cumulative_total": 30},
            user="bigspender",
        ),
        *(
            notification_event(
                f"bomb-line-{n}",
                "sub_gift",
                GIFT | recipient(n) | {"community_gift_id": "cg-1"},
                user="bigspender",
            )
            for n in range(3)
        ),
    ]
    script = [
        chat_event("c-1", [text("Cheer100 great set")], bits=100),
        chat_event(
            "r-1",
            [text("@ronni agreed")],
            reply_to=("p-1", "ronni", "what a song"),
            message_type="channel_points_highlighted",
        ),
        chat_event(
            "local-id", [text("from next door")], source=("42", "shared-1", [("subscriber", "3")])
        ),
        chat_event(
            "f-1",
            [text("first time here")],
            user="early",
            user_id="77",
            badges=[("founder", "0")],
            message_type="user_intro",
        ),
        chat_event("w-1", [text("play the encore")], reward="rw-9"),
        notification_event(
            "n-resub",
            "resub",
            {
                "cumulative_months": 10,
                "duration_months": 1,
                "streak_months": None,
                "sub_tier": "2000",
                "is_prime": False,
                "is_gift": False,
                "gifter_is_anonymous": None,
                "gifter_user_id": None,
                "gifter_user_name": None,
                "gifter_user_login": None,
            },
            text="ten months!",
        ),
        notification_event(
            "n-raid",
            "raid",
            {
                "user_id": "9",
                "user_name": "Raider",
                "user_login": "raider",
                "viewer_count": 77,
                "profile_image_url": "https://x/raider.png",
            },
            user="raider",
        ),
        notification_event("n-unraid", "unraid", {}),
        notification_event(  # a raid on the other channel of a shared chat session
            "n-shared-local",
            "shared_chat_raid",
            {
                "user_id": "8",
                "user_name": "Visitor",
                "user_login": "visitor",
                "viewer_count": 12,
                "profile_image_url": "https://x/visitor.png",
            },
            user="visitor",
            source=("42", "n-shared-source"),
        ),
        *bomb,
        notification_event("n-gift", "sub_gift", GIFT | recipient(9) | {"community_gift_id": None}),
    ]
    async with EventSubServer(script=script) as server:
        adapter = TwitchEventSub("dallas", "user-token", eventsub_settings(server))
        worker = Worker(adapter, bus, session_id, WORKER)
        running = asyncio.create_task(worker.run())
        events = await collect(bus, session_id, 15)
        worker.stop()
        await running

    by_id = {event.payload["id"]: event.payload for event in events}
    cheer = by_id["twitch:c-1:cheer"]
    assert (cheer["kind"], cheer["amountMinor"], cheer["currency"]) == ("cheer", 100, "BITS")
    reply = by_id["twitch:r-1"]
    assert reply["replyParent"] == {
        "id": "twitch:p-1",
        "username": "ronni",
        "displayName": "Ronni",
        "text": "what a song",
    }
    assert reply["highlighted"] is True
    shared = by_id["twitch:shared-1"]  # keyed by the source id every channel sees
    assert (shared["sourceChannel"], shared["badges"]) == ("42", ["subscriber"])
    founder = by_id["twitch:f-1"]  # a founder is a subscriber; user_intro is a first message
    assert (founder["badges"], founder["isSubscriber"], founder["firstMessage"]) == (
        ["founder"],
        True,
        True,
    )
    reward = by_id["twitch:w-1:reward"]
    assert (reward["kind"], reward["detail"], reward["message"]) == (
        "reward",
        "rw-9",
        "play the encore",
    )
    resub = by_id["twitch:n-resub"]
    assert (resub["kind"], resub["months"], resub["tier"], resub["message"]) == (
        "resub",
        10,
        "Tier 2",
        "ten months!",
    )
    raid = by_id["twitch:n-raid"]
    assert (raid["kind"], raid["count"]) == ("raid", 77)
    assert "twitch:n-unraid" not in by_id
    # keyed by the source message id every channel of the session (and IRC's source-id) has
    visit = by_id["twitch:n-shared-source"]
    assert (visit["kind"], visit["count"], visit["sourceChannel"]) == ("raid", 12, "42")
    gifts = [by_id[f"twitch:{key}"] for key in ("bomb-1", *(f"bomb-line-{n}" for n in range(3)))]
    assert [g["kind"] for g in gifts] == ["giftbomb", "giftsub", "giftsub", "giftsub"]
    assert sum(g["count"] for g in gifts) == 3
    assert [g.get("recipient") for g in gifts[1:]] == ["fan0", "fan1", "fan2"]
    single = by_id["twitch:n-gift"]
    assert (single["kind"], single["count"], single["recipient"]) == ("giftsub", 1, "fan9")
    assert await ledger.totals(bus.redis, session_id) == {"twitch": {"BITS": 100.0}}


def test_every_notice_type_is_mapped_or_ignored() -> None:
    twitchio_types = {
        "sub", "resub", "sub_gift", "community_sub_gift", "gift_paid_upgrade",
        "prime_paid_upgrade", "raid", "unraid", "pay_it_forward", "announcement",
        "bits_badge_tier", "charity_donation", "watch_streak", "modiversary",
    }  # fmt: skip
    assert twitchio_types == set(NOTICE_TYPE_KINDS) | set(IGNORED_NOTICE_TYPES)
    assert not set(NOTICE_TYPE_KINDS) & set(IGNORED_NOTICE_TYPES)
