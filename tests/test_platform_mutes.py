"""Muting a platform user: their ingested messages stop reaching the session (the publish
script drops them), their money still counts, and producers see who is muted by name."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest

from broker import Bus, ledger
from broker.models import MessageType, NormalizedChatMessage, Platform, PlatformEvent, Role
from ingest.batching import grouped_by_kind
from ingest.discord_map import DiscordAuthor, DiscordChat, map_message
from ingest.tiktok_map import map_comment
from ingest.youtube_map import map_chat_item
from server.interactions.catalog import STATE_PARTS
from tests.support.platforms.tiktok import FakeTikTok
from tests.support.platforms.youtube import chat_item
from tests.support.studio import open_studio


def line(n: int, user_id: str, username: str) -> NormalizedChatMessage:
    return NormalizedChatMessage(
        id=f"twitch:m{n}",
        platform=Platform.TWITCH,
        username=username,
        text=f"message {n}",
        timestamp=n,
        user_id=user_id,
    )


async def publish(bus: Bus, session_id: str, *items: NormalizedChatMessage | PlatformEvent) -> None:
    for kind, events in grouped_by_kind(items):
        await bus.publish_many(session_id, kind, events)


async def test_a_muted_platform_user_is_not_published_until_unmuted(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        staff = studio.actor(Role.PRODUCER, "producer-1")
        mute = {"userId": "twitch:666", "platform": "twitch", "username": "troll"}
        await studio.do(staff, MessageType.CHAT_MUTE, {**mute, "muted": True})
        cheer = PlatformEvent(
            id="twitch:m3:cheer",
            platform=Platform.TWITCH,
            kind="cheer",
            username="troll",
            user_id="666",
            amount_minor=50,
            currency="BITS",
            timestamp=3,
        )
        await publish(bus, studio.session_id, line(1, "666", "troll"), line(2, "7", "fan"), cheer)
        texts = [e.payload["text"] for e in await studio.events("chat.message")]
        assert texts == ["message 2"]
        # money is the artist's whoever sent it: a muted user's cheer still counts
        assert await ledger.totals(bus.redis, studio.session_id) == {"twitch": {"BITS": 50.0}}

        state: dict = {}
        for part in STATE_PARTS:
            state.update(await part(studio.services, studio.session_id))
        assert state["mutedNames"] == [
            {"userId": "twitch:666", "platform": "twitch", "username": "troll"}
        ]
        [announced] = await studio.events("chat.mute")
        assert announced.payload["username"] == "troll"

        await studio.do(staff, MessageType.CHAT_MUTE, {**mute, "muted": False})
        await publish(bus, studio.session_id, line(4, "666", "troll"))
        texts = [e.payload["text"] for e in await studio.events("chat.message")]
        assert texts == ["message 2", "message 4"]


def youtube_line(text: str) -> NormalizedChatMessage:
    [message] = map_chat_item(chat_item(f"yt-{text}", text=text, author="@sam", channel="UCsam"))
    assert isinstance(message, NormalizedChatMessage)
    return message


def tiktok_line(text: str) -> NormalizedChatMessage:
    return map_comment(FakeTikTok.comment(zlib.crc32(text.encode()) + 1, text)[1])


def discord_line(text: str) -> NormalizedChatMessage:
    author = DiscordAuthor(id=81384788765712384, username="sam")
    return map_message(DiscordChat(zlib.crc32(text.encode()) + 1, 2, author, text, 0))


@pytest.mark.parametrize(
    ("mapped", "key"),
    [
        (youtube_line, "youtube:UCsam"),
        (tiktok_line, "tiktok:6900000000000000001"),
        (discord_line, "discord:81384788765712384"),
    ],
)
async def test_muting_a_youtube_tiktok_or_discord_user(
    bus: Bus, mapped: Callable[[str], NormalizedChatMessage], key: str
) -> None:
    """Each platform's mapping gives its author the id the console's ``m`` mutes."""
    async with open_studio(bus) as studio:
        staff = studio.actor(Role.PRODUCER, "producer-1")
        platform = key.partition(":")[0]
        mute = {"userId": key, "platform": platform, "username": "sam"}
        await studio.do(staff, MessageType.CHAT_MUTE, {**mute, "muted": True})
        await publish(bus, studio.session_id, mapped("muted words"))
        await studio.do(staff, MessageType.CHAT_MUTE, {**mute, "muted": False})
        await publish(bus, studio.session_id, mapped("welcome back"))
        texts = [e.payload["text"] for e in await studio.events("chat.message")]
        assert texts == ["welcome back"]
