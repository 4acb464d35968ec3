"""TikTok: pure mapping of the raw protobuf fields, and TikTokLive's own client driven end to end
by a local page, webcast API, sign server and push server sending TikTokLive's protobuf frames."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Callable

import pytest
from TikTokLive.proto import (
    CommonMessageData,
    WebcastChatMessage,
    WebcastGiftMessage,
    WebcastSocialMessage,
)
from TikTokLive.proto.custom_proto import ExtendedUser

from broker import Bus
from broker.models import ChatDelete, NormalizedChatMessage, Platform, PlatformEvent
from config import IngestSettings
from ingest.base import AdapterFatal, IngestItem
from ingest.runtime import Worker
from ingest.signbucket import bucket_name
from ingest.tiktok import TikTokAdapter, _skipping_malformed
from ingest.tiktok_map import (
    badges_of,
    delete_items,
    gift_event,
    like_event,
    live_ended,
    map_comment,
    social_event,
    subscribe_event,
    timestamp_of,
)
from tests.support.platforms.tiktok import ROOM_ID, FakeTikTok, badge, tiktok_user

ADMIN, SUBSCRIBER, RANK, GRADE, FANS = 1, 4, 6, 8, 10

# --- pure mapping -----------------------------------------------------------------------------


def comment(user=None, **identity: bool) -> WebcastChatMessage:
    return FakeTikTok.comment(77, "hi there", user, **identity)[1]


def test_comment_fields() -> None:
    message = map_comment(comment())
    assert message == NormalizedChatMessage(
        id="tiktok:77",
        platform=Platform.TIKTOK,
        username="fan_one",
        display_name="Fan One",
        text="hi there",
        badges=None,
        is_subscriber=False,
        is_moderator=False,
        timestamp=1_767_323_045_678,
        user_id="6900000000000000001",
    )


def test_badges_come_from_the_raw_badge_list() -> None:
    user = tiktok_user(badges=[badge(GRADE, "25"), badge(FANS, "12"), badge(RANK), badge(99)])
    assert badges_of(user) == ["gifter", "fan_club", "top_gifter"]


def test_moderator_from_identity_admin_attr_or_admin_badge() -> None:
    by_identity = map_comment(comment(is_moderator_of_anchor=True))
    assert by_identity.is_moderator and by_identity.badges == ["moderator"]
    by_attr = map_comment(comment(tiktok_user(admin=True)))
    assert by_attr.is_moderator
    badged = tiktok_user(badges=[badge(ADMIN)])
    assert map_comment(comment(badged)).is_moderator
    # the reason we read raw fields: TikTokLive's own helper misses the same moderator
    assert ExtendedUser.from_user(badged).is_moderator is False


def test_subscriber_from_identity_or_badge() -> None:
    assert map_comment(comment(is_subscriber_of_anchor=True)).is_subscriber
    badged = map_comment(comment(tiktok_user(badges=[badge(SUBSCRIBER, "3")])))
    assert badged.is_subscriber and badged.badges == ["subscriber"]


def test_comment_without_user_or_id_still_maps() -> None:
    bare = WebcastChatMessage(common=CommonMessageData(create_time=1_700_000_000), content="x")
    message = map_comment(bare)
    assert message.username == "unknown" and message.timestamp == 1_700_000_000_000
    assert message.id.startswith("tiktok:")


def test_likes_gifts_and_streaks() -> None:
    like = like_event(FakeTikTok.like(5, count=15, total=1000)[1])
    assert (like.kind, like.count, like.detail, like.id) == (
        "like",
        15,
        "1000 likes in total",
        "tiktok:5",
    )
    assert gift_event(FakeTikTok.gift(6, "Rose", repeat=3, end=False)[1]) is None  # mid-streak
    done = gift_event(FakeTikTok.gift(7, "Rose", repeat=4, end=True)[1])
    assert isinstance(done, PlatformEvent)
    assert (done.kind, done.count, done.detail) == ("gift", 4, "Rose")
    # TikTokLive's own gift value: 1 diamond each, 4 sent, as a number in the DIAMONDS unit
    assert (done.amount_minor, done.currency) == (4, "DIAMONDS")
    single = gift_event(FakeTikTok.gift(8, "Lion", repeat=1, end=False, streakable=False)[1])
    assert single is not None and single.count == 1
    unnamed = gift_event(WebcastGiftMessage(common=CommonMessageData(msg_id=9), gift_id=42))
    assert unnamed is not None and unnamed.detail == "gift 42"


def test_follows_and_shares() -> None:
    follow = social_event(FakeTikTok.social(1, "pm_main_follow_message_viewer_2")[1])
    share = social_event(FakeTikTok.social(2, "pm_mt_guidance_share", share_count=3)[1])
    assert (follow.kind, share.kind, share.count) == ("follow", "share", 3)
    by_action = social_event(WebcastSocialMessage(common=CommonMessageData(msg_id=3), action=1))
    assert by_action is not None and by_action.kind == "follow"
    assert social_event(FakeTikTok.social(4, "pm_mt_something_else")[1]) is None


def test_negative_counts_are_not_trusted() -> None:
    follow = social_event(FakeTikTok.social(1, "pm_main_follow", follow_count=-3)[1])
    assert follow is not None and follow.count is None
    like = like_event(FakeTikTok.like(2, count=-1, total=0)[1])
    assert like.count == 0


def test_an_event_that_cannot_be_mapped_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: object) -> None:
        raise ValueError("no such field")

    _skipping_malformed("WebcastGiftMessage", broken)(object())  # does not raise
    assert "skipped a WebcastGiftMessage that could not be mapped: no such field" in caplog.text


def test_subscription_and_control() -> None:
    sub = subscribe_event(FakeTikTok.subscribe(1, 6)[1])
    assert (sub.kind, sub.count, sub.months, sub.detail) == ("resub", 1, 6, "6 months")
    assert subscribe_event(FakeTikTok.subscribe(5, 1)[1]).kind == "sub"
    assert live_ended(FakeTikTok.control(2, 3)[1]) and live_ended(FakeTikTok.control(3, 4)[1])
    assert not live_ended(FakeTikTok.control(4, 1)[1])


def test_deletions_by_message_and_by_known_user() -> None:
    items = delete_items(FakeTikTok.delete(1, [10, 11], users=[555, 666])[1], {555: "troll"})
    assert items == [
        ChatDelete(message_id="tiktok:10", reason="deleted on TikTok"),
        ChatDelete(message_id="tiktok:11", reason="deleted on TikTok"),
        ChatDelete(username="troll", platform=Platform.TIKTOK, reason="removed on TikTok"),
    ]


def test_timestamps() -> None:
    assert timestamp_of(CommonMessageData(create_time=1_700_000_000)) == 1_700_000_000_000
    assert timestamp_of(CommonMessageData(create_time=1_700_000_000_123)) == 1_700_000_000_123
    assert timestamp_of(None) > 1_700_000_000_000


def test_adapter_needs_a_user() -> None:
    with pytest.raises(ValueError, match="@name"):
        TikTokAdapter(user="@")


# --- TikTokLive's client against the local TikTok ---------------------------------------------


async def until(check: Callable[[], bool], task: asyncio.Task, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            if task.done():
                task.result()
                raise AssertionError("the adapter stopped")
            await asyncio.sleep(0.02)


def adapter_for(fake: FakeTikTok, user: str = "@artist", **kwargs: object) -> TikTokAdapter:
    return TikTokAdapter(
        user=user,
        sign_url=fake.sign_url,
        app_url=fake.url,
        webcast_url=fake.webcast_url,
        **kwargs,
    )


async def test_a_live_room_end_to_end() -> None:
    moderator = tiktok_user(7, "mod_user", "Mod", badges=[badge(GRADE, "30")])
    fake = FakeTikTok(initial=[FakeTikTok.comment(100, "from before we joined")])
    items: list[IngestItem] = []
    async with fake.running():
        adapter = adapter_for(fake)
        task = asyncio.create_task(adapter.run(items.append))
        await until(lambda: adapter.status.state == "connected" and bool(fake.sockets), task)
        log_id = await fake.push(
            FakeTikTok.comment(101, "hello 👋", moderator, is_moderator_of_anchor=True),
            FakeTikTok.like(102, 15, 2000),
            FakeTikTok.gift(103, "Rose", repeat=1, end=False),
            FakeTikTok.gift(104, "Rose", repeat=2, end=True),
            FakeTikTok.social(105, "pm_main_follow_message_viewer_2"),
        )
        await fake.push(
            FakeTikTok.subscribe(106, 2),
            FakeTikTok.delete(107, [101], users=[7]),
        )
        await until(lambda: len(items) >= 8, task)
        await until(lambda: len(fake.frames("hb")) >= 2, task)
        await fake.push(FakeTikTok.control(108, 3))  # the LIVE ends
        with pytest.raises(AdapterFatal, match="LIVE of @artist has ended"):
            await asyncio.wait_for(task, 10)

    [like] = [item for item in items if isinstance(item, PlatformEvent) and item.kind == "like"]
    history, chat, gift, follow, sub, deleted, banned = [item for item in items if item is not like]
    assert (history.id, history.text) == ("tiktok:100", "from before we joined")
    assert isinstance(chat, NormalizedChatMessage)
    assert (chat.id, chat.username, chat.display_name, chat.text) == (
        "tiktok:101",
        "mod_user",
        "Mod",
        "hello 👋",
    )
    assert chat.is_moderator and chat.badges == ["moderator", "gifter"]
    assert (like.kind, like.count) == ("like", 15)
    assert (gift.kind, gift.count, gift.id) == ("gift", 2, "tiktok:104")  # one event per streak
    assert follow.kind == "follow" and sub.kind == "resub"
    assert deleted == ChatDelete(message_id="tiktok:101", reason="deleted on TikTok")
    assert banned == ChatDelete(
        username="mod_user", platform=Platform.TIKTOK, reason="removed on TikTok"
    )

    # what TikTokLive said to the servers
    [sign] = fake.sign_requests
    assert sign["room_id"] == str(ROOM_ID) and sign["client"] == "ttlive-python"
    [query] = fake.push_queries
    assert query["room_id"] == str(ROOM_ID) and query["compress"] == "gzip"
    assert query["wrss"] == "wrss-token"  # route params from the sign server's answer
    [enter] = fake.frames("im_enter_room")
    assert enter.parsed.room_id == ROOM_ID
    assert all(hb.parsed.room_id == ROOM_ID for hb in fake.frames("hb"))
    acks = fake.frames("ack")
    assert acks[0].log_id == log_id and acks[0].payload == b"internal-1"


async def test_a_given_room_id_skips_the_page() -> None:
    fake = FakeTikTok(user="someone-else")  # the page would not know @artist
    async with fake.running():
        adapter = adapter_for(fake, room_id=ROOM_ID)
        task = asyncio.create_task(adapter.run(lambda item: None))
        await until(lambda: adapter.status.state == "connected", task)
        await fake.drop()
        with pytest.raises(Exception) as stopped:  # any error but AdapterFatal: reconnect
            await asyncio.wait_for(task, 10)
    assert not isinstance(stopped.value, AdapterFatal)
    assert "1011" in str(stopped.value)  # the close the push server sent


async def test_offline_and_unknown_users_are_fatal() -> None:
    async with FakeTikTok(live=False).running() as fake:
        with pytest.raises(AdapterFatal, match="@artist is not LIVE now"):
            await asyncio.wait_for(adapter_for(fake).run(lambda item: None), 10)
        with pytest.raises(AdapterFatal, match="@nobody does not exist"):
            await asyncio.wait_for(adapter_for(fake, "nobody").run(lambda item: None), 10)


async def test_an_unreachable_sign_server_means_reconnect() -> None:
    async with FakeTikTok().running() as fake:
        adapter = TikTokAdapter(
            user="artist",
            sign_url="http://127.0.0.1:9",
            app_url=fake.url,
            webcast_url=fake.webcast_url,
        )
        with pytest.raises(Exception) as stopped:
            await asyncio.wait_for(adapter.run(lambda item: None), 10)
    assert not isinstance(stopped.value, AdapterFatal)
    assert "sign server" in str(stopped.value)


# --- through the worker runtime to the bus, and through the command ---------------------------


async def test_worker_publishes_chat_and_events_to_the_bus(bus: Bus, session_id: str) -> None:
    settings = IngestSettings(batch_interval_ms=5, heartbeat_ttl=5)
    fake = FakeTikTok()
    async with fake.running():
        adapter = adapter_for(fake)
        worker = Worker(adapter, bus, session_id, settings)
        task = asyncio.create_task(worker.run())
        await until(lambda: adapter.status.state == "connected" and bool(fake.sockets), task)
        await fake.push(
            FakeTikTok.comment(201, "first!"),
            FakeTikTok.gift(202, "Rose", repeat=3, end=True),
            FakeTikTok.comment(203, "second"),
        )
        await until(lambda: worker.stats.received >= 3, task)
        await fake.push(FakeTikTok.control(204, 3))
        with pytest.raises(AdapterFatal, match="has ended"):
            await asyncio.wait_for(task, 10)
    events = (await bus.replay(session_id, "0-0")).events
    assert [(e.kind, e.type, e.payload["id"]) for e in events] == [
        ("chat", "chat.message", "tiktok:201"),
        ("events", "platform.event", "tiktok:202"),
        ("chat", "chat.message", "tiktok:203"),
    ]
    assert events[1].payload["kind"] == "gift" and events[1].payload["count"] == 3


@pytest.mark.slow
@pytest.mark.usefixtures("session_record")
async def test_the_command_reads_until_the_live_ends(
    redis_url: str, bus: Bus, session_id: str
) -> None:
    fake = FakeTikTok(initial=[FakeTikTok.comment(301, "hello from the command")])
    sign_key = f"euler_{uuid.uuid4().hex}"
    async with fake.running():
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "vstudio_cli.main",
            "ingest",
            "tiktok",
            "--session",
            session_id,
            "--user",
            "@artist",
            "--app-url",
            fake.url,
            "--webcast-url",
            fake.webcast_url,
            "--redis-url",
            redis_url,
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={
                **os.environ,
                "VSTUDIO_TIKTOK_SIGN_URL": fake.sign_url,
                # a sign bucket of its own, however often the suite runs on one Redis
                "SIGN_API_KEY": sign_key,
            },
        )
        async with asyncio.timeout(30):
            while not fake.sockets or not fake.frames("im_enter_room"):
                await asyncio.sleep(0.05)
            await fake.push(FakeTikTok.control(302, 3))
            stdout, stderr = await process.communicate()
    assert process.returncode == 1, stderr
    assert b"the TikTok LIVE of @artist has ended" in stderr and b"Traceback" not in stderr
    [stopped] = [json.loads(line) for line in stdout.splitlines() if b'"stopped"' in line]
    assert stopped["published"] == 1
    [event] = (await bus.replay(session_id, "0-0")).events
    assert event.payload["text"] == "hello from the command"
    assert await bus.redis.hget(bucket_name(sign_key), "at")  # a token came from its bucket


async def test_a_reconnect_replays_history_that_the_bus_publishes_once(
    bus: Bus, session_id: str
) -> None:
    settings = IngestSettings(
        batch_interval_ms=5, heartbeat_ttl=5, reconnect_initial=0.02, reconnect_max=0.1
    )
    fake = FakeTikTok(initial=[FakeTikTok.comment(100, "recent history")])
    async with fake.running():
        adapter = adapter_for(fake)
        worker = Worker(adapter, bus, session_id, settings)
        task = asyncio.create_task(worker.run())
        await until(lambda: len(fake.frames("im_enter_room")) == 1, task)
        await fake.push(FakeTikTok.comment(101, "live"))
        await until(lambda: worker.stats.received == 2, task)
        await fake.drop()  # TikTokLive's socket ends; the runtime connects again
        await until(lambda: len(fake.frames("im_enter_room")) == 2, task)
        await fake.push(FakeTikTok.comment(102, "after the reconnect"))
        await until(lambda: worker.stats.received == 4, task)  # 100 came again with history
        await fake.push(FakeTikTok.control(103, 3))
        with pytest.raises(AdapterFatal):
            await asyncio.wait_for(task, 10)
    events = (await bus.replay(session_id, "0-0")).events
    assert [e.payload["id"] for e in events] == ["tiktok:100", "tiktok:101", "tiktok:102"]
    assert worker.stats.duplicates == 1 and worker.stats.reconnects == 1
    assert len(fake.sign_requests) == 2  # a fresh signed URL for the new connection
