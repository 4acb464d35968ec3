"""Muting a platform user: their ingested messages stop reaching the session (the publish
script drops them), their money still counts, and producers see who is muted by name."""

from __future__ import annotations

from broker import Bus, ledger
from broker.models import MessageType, NormalizedChatMessage, Platform, PlatformEvent, Role
from ingest.batching import grouped_by_kind
from server.interactions.catalog import STATE_PARTS
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
