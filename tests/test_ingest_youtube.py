"""YouTube: pure mapping, and the real adapter against a local Data API v3 server."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import uuid

import pytest

from broker import Bus
from broker.models import ChatDelete, NormalizedChatMessage, Platform, PlatformEvent
from config import IngestSettings
from ingest.base import AdapterFatal, IngestItem
from ingest.quota import QuotaLedger
from ingest.runtime import Worker
from ingest.youtube import YouTubeAdapter
from ingest.youtube_map import (
    YouTubeApiError,
    classify_error,
    live_chat_id_of,
    live_video_id_of,
    map_chat_item,
    parse_published_at,
    video_id_from,
)
from tests.support.platforms.youtube import FakeYouTube, chat_item, error_body

# --- pure mapping -----------------------------------------------------------------------------


def test_text_message_maps_author_flags_to_badges() -> None:
    [message] = map_chat_item(
        chat_item(
            "m1",
            text="hi ✨",
            author="@mod",
            channel="UCmod",
            moderator=True,
            sponsor=True,
            verified=True,
        )
    )
    assert isinstance(message, NormalizedChatMessage)
    assert message.id == "youtube:m1"
    assert message.platform is Platform.YOUTUBE
    assert (message.username, message.display_name, message.user_id) == ("@mod", "@mod", "UCmod")
    assert message.text == "hi ✨"
    assert message.badges == ["moderator", "member", "verified"]
    assert message.is_moderator is True and message.is_subscriber is True
    assert message.timestamp == 1767323045678


def test_owner_is_moderator_and_plain_fan_has_no_badges() -> None:
    [owner] = map_chat_item(chat_item("o", owner=True))
    [fan] = map_chat_item(chat_item("f"))
    assert owner.badges == ["owner"] and owner.is_moderator is True
    assert fan.badges is None and fan.is_moderator is False and fan.is_subscriber is False


def test_deleted_message_and_ban_become_deletions() -> None:
    [deleted] = map_chat_item(
        chat_item("d1", "messageDeletedEvent", messageDeletedDetails={"deletedMessageId": "m1"})
    )
    assert deleted == ChatDelete(message_id="youtube:m1", reason="deleted on YouTube")
    [ban] = map_chat_item(
        chat_item(
            "b1",
            "userBannedEvent",
            userBannedDetails={
                "bannedUserDetails": {"channelId": "UCx", "displayName": "@troll"},
                "banType": "temporary",
                "banDurationSeconds": 300,
            },
        )
    )
    assert isinstance(ban, ChatDelete)
    # by channel id: display names are not unique on YouTube
    assert (ban.user_id, ban.username, ban.platform) == ("UCx", None, Platform.YOUTUBE)
    assert ban.reason == "temporary ban on YouTube (300 s)"


def test_superchat_is_an_event_and_its_comment_is_chat() -> None:
    event, chat = map_chat_item(
        chat_item(
            "s1",
            "superChatEvent",
            superChatDetails={
                "amountMicros": "5000000",
                "currency": "USD",
                "amountDisplayString": "$5.00",
                "userComment": "love it",
                "tier": 2,
            },
        )
    )
    assert isinstance(event, PlatformEvent)
    assert (event.kind, event.detail, event.id, event.message) == (
        "superchat",
        "$5.00",
        "youtube:s1:superchat",
        "love it",
    )
    assert (event.amount_minor, event.currency, event.tier) == (500, "USD", "2")
    assert isinstance(chat, NormalizedChatMessage)
    assert chat.text == "love it" and chat.badges == ["superchat"]


def test_memberships_and_unknown_types() -> None:
    [member] = map_chat_item(
        chat_item("n1", "newSponsorEvent", newSponsorDetails={"memberLevelName": "Gold"})
    )
    assert (member.kind, member.detail) == ("member", "Gold")
    [gift] = map_chat_item(
        chat_item(
            "g1",
            "membershipGiftingEvent",
            membershipGiftingDetails={
                "giftMembershipsCount": 5,
                "giftMembershipsLevelName": "Gold",
            },
        )
    )
    assert (gift.kind, gift.count, gift.tier) == ("membergift", 5, "Gold")
    assert map_chat_item(chat_item("t1", "tombstone")) == []
    assert map_chat_item({"snippet": {"type": "textMessageEvent"}}) == []


@pytest.mark.parametrize(
    "item",
    [
        "garbage",
        {"id": "x", "snippet": "not an object"},
        {"id": 5, "snippet": {"type": "textMessageEvent"}},
        {"id": "y", "snippet": {"type": "textMessageEvent"}, "authorDetails": ["?"]},
    ],
)
def test_malformed_items_map_to_nothing_or_safe_defaults(item: object) -> None:
    mapped = map_chat_item(item)  # type: ignore[arg-type]  # malformed on purpose
    assert all(m.username == "unknown" for m in mapped)


async def test_a_malformed_item_is_skipped_and_the_rest_read() -> None:
    fake = FakeYouTube(
        pages=[
            [
                {
                    "id": "bad",
                    "snippet": {
                        "type": "textMessageEvent",
                        "publishedAt": 5,
                        "textMessageDetails": {"messageText": 42},
                    },
                },
                chat_item("m1"),
            ]
        ],
        offline_after_pages=True,
    )
    async with fake.running():
        adapter = YouTubeAdapter(video_id="Live1234567", api_url=fake.url, api_key="KEY")
        items, stopped = await collect(adapter)
    assert [i.id for i in items] == ["youtube:m1"]
    assert isinstance(stopped, AdapterFatal) and "went offline" in str(stopped)


def test_long_text_is_clipped_not_refused() -> None:
    [message] = map_chat_item(chat_item("long", text="x" * 5000))
    assert len(message.text) == 2000


def test_published_at_parsing() -> None:
    assert parse_published_at("2026-01-02T03:04:05Z") == 1767323045000
    assert parse_published_at("not a date") > 1767323045000  # falls back to now
    assert parse_published_at(None) > 0


@pytest.mark.parametrize(
    ("status", "reason", "retryable", "ended", "says"),
    [
        (403, "quotaExceeded", False, False, "quota"),
        (403, "rateLimitExceeded", True, False, "backing off"),
        (403, "liveChatEnded", False, True, "ended"),
        (404, "liveChatNotFound", False, True, "does not exist"),
        (403, "liveChatDisabled", False, True, "turned off"),
        (400, "keyInvalid", False, False, "API key"),
        (401, "authError", False, False, "OAuth"),
        (503, "backendError", True, False, "boom"),
    ],
)
def test_errors_are_classified(
    status: int, reason: str, retryable: bool, ended: bool, says: str
) -> None:
    error = classify_error(status, error_body(status, reason, "boom"))
    assert (error.reason, error.retryable, error.ended) == (reason, retryable, ended)
    assert says in error.message


def test_error_without_google_body() -> None:
    error = classify_error(502, None)
    assert error.retryable and error.status == 502


def test_live_chat_id_and_live_video_resolution() -> None:
    assert (
        live_chat_id_of("v", {"items": [{"liveStreamingDetails": {"activeLiveChatId": "C"}}]})
        == "C"
    )
    with pytest.raises(YouTubeApiError, match="no video"):
        live_chat_id_of("v", {"items": []})
    with pytest.raises(YouTubeApiError, match="has ended"):
        live_chat_id_of("v", {"items": [{"liveStreamingDetails": {"actualEndTime": "x"}}]})
    with pytest.raises(YouTubeApiError, match="not a live broadcast"):
        live_chat_id_of("v", {"items": [{"id": "v"}]})
    assert live_video_id_of("c", {"items": [{"id": {"videoId": "V"}}]}) == "V"
    with pytest.raises(YouTubeApiError, match="not live"):
        live_video_id_of("c", {"items": []})


@pytest.mark.parametrize(
    "text",
    [
        "dQw4w9WgXcQ",
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s",
        "youtube.com/watch?feature=share&v=dQw4w9WgXcQ",
        "https://youtu.be/dQw4w9WgXcQ?si=abc",
        "https://www.youtube.com/live/dQw4w9WgXcQ?feature=shared",
        "https://m.youtube.com/embed/dQw4w9WgXcQ",
    ],
)
def test_video_ids_from_what_people_paste(text: str) -> None:
    assert video_id_from(text) == "dQw4w9WgXcQ"


@pytest.mark.parametrize("text", ["", "short", "https://www.youtube.com/@artist", "a b c d e f"])
def test_not_a_video(text: str) -> None:
    with pytest.raises(ValueError, match="not a YouTube video id"):
        video_id_from(text)


def test_adapter_needs_a_target_and_credentials() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        YouTubeAdapter(api_key="k")
    with pytest.raises(ValueError, match="API key"):
        YouTubeAdapter(video_id="v")


# --- the real adapter against the local API ---------------------------------------------------


async def collect(
    adapter: YouTubeAdapter, timeout: float = 10.0
) -> tuple[list[IngestItem], BaseException]:
    """Run the adapter until it stops; what it emitted and the exception it stopped with."""
    items: list[IngestItem] = []
    try:
        await asyncio.wait_for(adapter.run(items.append), timeout)
    except Exception as exc:  # returned for the test to check (TimeoutError too)
        return items, exc
    raise AssertionError("run returned without an error")


async def test_pages_deletions_and_offline_end() -> None:
    fake = FakeYouTube(
        pages=[
            [chat_item("m1", text="first"), chat_item("m2", text="second", sponsor=True)],
            [
                chat_item(
                    "d1", "messageDeletedEvent", messageDeletedDetails={"deletedMessageId": "m1"}
                ),
                chat_item("m3", text="third"),
            ],
            [],
        ],
        interval_ms=120,
        offline_after_pages=True,
    )
    async with fake.running():
        video_url = "https://www.youtube.com/watch?v=Live1234567"
        adapter = YouTubeAdapter(video_id=video_url, api_url=fake.url, api_key="KEY")
        items, stopped = await collect(adapter)
    assert isinstance(stopped, AdapterFatal) and "went offline" in str(stopped)
    assert [getattr(i, "id", None) or i.message_id for i in items] == [
        "youtube:m1",
        "youtube:m2",
        "youtube:m1",
        "youtube:m3",
    ]
    assert isinstance(items[2], ChatDelete)
    polls = fake.calls("liveChat/messages")
    assert [p.params.get("pageToken") for p in polls] == [None, "page1", "page2", "page3"]
    assert all(p.params["key"] == "KEY" and p.params["liveChatId"] == "CHAT1" for p in polls)
    gaps = [b.at - a.at for a, b in itertools.pairwise(polls)]
    assert min(gaps) >= 0.11, gaps  # pollingIntervalMillis honoured


async def test_quota_exhausted_is_fatal_with_advice() -> None:
    fake = FakeYouTube(
        pages=[
            [chat_item("m1")],
            (
                403,
                error_body(
                    403,
                    "quotaExceeded",
                    "The request cannot be completed because you have exceeded your quota.",
                    "youtube.quota",
                ),
            ),
        ]
    )
    async with fake.running():
        adapter = YouTubeAdapter(video_id="Live1234567", api_url=fake.url, api_key="KEY")
        items, stopped = await collect(adapter)
    assert [i.id for i in items] == ["youtube:m1"]
    assert isinstance(stopped, AdapterFatal)
    assert "quota" in str(stopped) and "Google Cloud console" in str(stopped)


async def test_rate_limit_raises_for_a_retry_that_resumes_from_the_page_token() -> None:
    fake = FakeYouTube(
        pages=[
            [chat_item("m1")],
            (403, error_body(403, "rateLimitExceeded", "Rate limit exceeded", "youtube.liveChat")),
            [chat_item("m2")],
        ],
        offline_after_pages=True,
    )
    async with fake.running():
        adapter = YouTubeAdapter(video_id="Live1234567", api_url=fake.url, api_key="KEY")
        first, stopped = await collect(adapter)
        assert isinstance(stopped, YouTubeApiError) and stopped.retryable
        assert adapter.status.state == "backing off"
        second, stopped = await collect(adapter)  # what the runtime does: run again
    assert [i.id for i in first] == ["youtube:m1"]
    assert [i.id for i in second] == ["youtube:m2"]  # nothing read twice
    assert isinstance(stopped, AdapterFatal)
    assert len(fake.calls("videos")) == 1  # the chat id was kept


async def test_live_chat_ended_is_a_clear_final_message() -> None:
    fake = FakeYouTube(
        pages=[
            [chat_item("m1")],
            (
                403,
                error_body(
                    403, "liveChatEnded", "The live chat is no longer live.", "youtube.liveChat"
                ),
            ),
        ]
    )
    async with fake.running():
        adapter = YouTubeAdapter(video_id="Live1234567", api_url=fake.url, api_key="KEY")
        _, stopped = await collect(adapter)
    assert isinstance(stopped, AdapterFatal)
    assert str(stopped) == "YouTube live chat of video:Live1234567: the live chat has ended"


async def test_channel_resolves_to_its_live_video_with_an_oauth_token() -> None:
    fake = FakeYouTube(
        api_key=None, oauth_token="TOKEN", pages=[[chat_item("m1")]], offline_after_pages=True
    )
    async with fake.running():
        adapter = YouTubeAdapter(channel_id="UCartist", api_url=fake.url, oauth_token="TOKEN")
        items, stopped = await collect(adapter)
    assert [i.id for i in items] == ["youtube:m1"]
    assert isinstance(stopped, AdapterFatal)
    [search] = fake.calls("search")
    assert search.params["eventType"] == "live" and search.params["channelId"] == "UCartist"
    assert "key" not in search.params
    assert search.headers["Authorization"] == "Bearer TOKEN"


async def test_a_handle_resolves_to_its_channel_then_its_live_video() -> None:
    fake = FakeYouTube(pages=[[chat_item("m1")]], offline_after_pages=True)
    async with fake.running():
        adapter = YouTubeAdapter(channel_id="@Artist", api_url=fake.url, api_key="KEY")
        items, _ = await collect(adapter)
    assert [i.id for i in items] == ["youtube:m1"]
    [channels] = fake.calls("channels")
    assert channels.params["forHandle"] == "@Artist"
    assert fake.calls("search")[0].params["channelId"] == "UCartist"


@pytest.mark.parametrize(
    ("kwargs", "live", "says"),
    [
        ({"channel_id": "@nobody"}, True, "no channel with handle '@nobody'"),
        ({"video_id": "Nope1234567"}, True, "no video with id 'Nope1234567'"),
        ({"video_id": "Live1234567"}, False, "its broadcast has ended"),
        ({"channel_id": "UCartist"}, False, "is not live now"),
        ({"channel_id": "UCother"}, True, "is not live now"),
    ],
)
async def test_nothing_live_is_fatal(kwargs: dict, live: bool, says: str) -> None:
    fake = FakeYouTube(live=live)
    async with fake.running():
        adapter = YouTubeAdapter(api_url=fake.url, api_key="KEY", **kwargs)
        _, stopped = await collect(adapter)
    assert isinstance(stopped, AdapterFatal) and says in str(stopped)


async def test_bad_api_key_is_fatal() -> None:
    fake = FakeYouTube()
    async with fake.running():
        adapter = YouTubeAdapter(video_id="Live1234567", api_url=fake.url, api_key="WRONG")
        _, stopped = await collect(adapter)
    assert isinstance(stopped, AdapterFatal)
    assert "keyInvalid" in str(stopped) and "check the API key" in str(stopped)


async def test_unreachable_api_raises_for_reconnect() -> None:
    fake = FakeYouTube()
    async with fake.running():
        url = fake.url
    adapter = YouTubeAdapter(video_id="Live1234567", api_url=url, api_key="KEY")
    _, stopped = await collect(adapter)
    assert not isinstance(stopped, AdapterFatal)
    assert isinstance(stopped, OSError)


# --- through the worker runtime to the bus, and through the command ---------------------------


def fast_settings(**extra: object) -> IngestSettings:
    return IngestSettings(
        reconnect_initial=0.02, reconnect_max=0.1, batch_interval_ms=5, heartbeat_ttl=5, **extra
    )


def chat_pages() -> list:
    return [
        [chat_item("m1", text="first"), chat_item("m2", text="second", moderator=True)],
        (403, error_body(403, "rateLimitExceeded", "Rate limit exceeded", "youtube.liveChat")),
        [
            chat_item(
                "d1", "messageDeletedEvent", messageDeletedDetails={"deletedMessageId": "m1"}
            ),
            chat_item(
                "s1",
                "superChatEvent",
                superChatDetails={"amountDisplayString": "€2.00", "userComment": "bravo"},
            ),
        ],
    ]


async def test_worker_publishes_chat_deletions_and_superchats_to_the_bus(
    bus: Bus, session_id: str
) -> None:
    fake = FakeYouTube(pages=chat_pages(), offline_after_pages=True)
    async with fake.running():
        adapter = YouTubeAdapter(video_id="Live1234567", api_url=fake.url, api_key="KEY")
        worker = Worker(adapter, bus, session_id, fast_settings())
        with pytest.raises(AdapterFatal, match="went offline"):
            await asyncio.wait_for(worker.run(), 20)
    events = (await bus.replay(session_id, "0-0")).events
    seen = [(e.kind, e.type, e.payload.get("id") or e.payload.get("messageId")) for e in events]
    assert seen == [
        ("chat", "chat.message", "youtube:m1"),
        ("chat", "chat.message", "youtube:m2"),
        ("chat", "chat.delete", "youtube:m1"),
        ("events", "platform.event", "youtube:s1:superchat"),
        ("chat", "chat.message", "youtube:s1"),
    ]
    assert events[1].payload["isModerator"] is True and events[1].payload["badges"] == ["moderator"]
    assert worker.stats.reconnects == 1  # the rate limit, retried from the same page token


@pytest.mark.slow
@pytest.mark.usefixtures("session_record")
async def test_the_command_runs_the_worker_and_explains_the_end(
    redis_url: str, bus: Bus, session_id: str
) -> None:
    key = f"KEY{uuid.uuid4().hex}"  # its own quota count, however often the suite runs
    fake = FakeYouTube(api_key=key, pages=chat_pages(), offline_after_pages=True)
    async with fake.running():
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "vstudio_cli.main",
            "ingest",
            "youtube",
            "--session",
            session_id,
            "--video",
            "Live1234567",
            "--api-url",
            fake.url,
            "--redis-url",
            redis_url,
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={
                **os.environ,
                "VSTUDIO_YOUTUBE_API_KEY": key,
                "VSTUDIO_RECONNECT_INITIAL": "0.05",
            },
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1, stderr
    assert b"went offline" in stderr and b"Traceback" not in stderr
    stopped = [json.loads(line) for line in stdout.splitlines() if b'"stopped"' in line]
    assert stopped and stopped[0]["published"] == 5
    assert len((await bus.replay(session_id, "0-0")).events) == 5
    used = await QuotaLedger(redis=bus.redis).used(key)  # the command counts what it spends
    assert used == 1 + 5 * len(fake.calls("liveChat/messages"))
