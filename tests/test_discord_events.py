"""Discord beyond plain text, through discord.py against the local gateway: stickers, system
messages, mentions resolved to names, threads of the channel, and the bot's own messages."""

from __future__ import annotations

import asyncio

from broker.models import NormalizedChatMessage, PlatformEvent
from ingest.base import IngestItem
from ingest.discord import DiscordAdapter
from ingest.discord_map import DiscordAuthor, DiscordChat, map_item, resolve_mentions
from tests.support.platforms.discord import (
    BOT_ID,
    CHANNEL_ID,
    MOD_ROLE_ID,
    THREAD_ID,
    FakeDiscord,
)

FAN = DiscordAuthor(id=6, username="fan", display_name="Fan")


def test_mentions_resolve_to_names_and_unknowns_say_so() -> None:
    names = {"@81384788765712384": "@Ronni", "@&5": "@Mods", "#7": "#general"}
    text = "hi <@81384788765712384> <@!81384788765712384> <@&5> see <#7> and <@99999999999999999>"
    assert resolve_mentions(text, names | {"@&55555555555555555": "@Mods"}) == (
        "hi @Ronni @Ronni <@&5> see <#7> and @unknown-user"
    )


def test_empty_and_system_messages_never_become_empty_chat() -> None:
    assert map_item(DiscordChat(1, 2, FAN, "", 0)) is None
    assert map_item(DiscordChat(1, 2, FAN, "", 0, kind="pins_add")) is None
    assert map_item(DiscordChat(1, 2, FAN, "", 0, kind="some_future_type")) is None
    joined = map_item(DiscordChat(1, 2, FAN, "", 0, kind="new_member"))
    assert isinstance(joined, PlatformEvent) and (joined.kind, joined.id) == ("follow", "discord:1")
    sticker = map_item(DiscordChat(3, 2, FAN, "", 0, stickers=("Wave",)))
    assert isinstance(sticker, NormalizedChatMessage) and sticker.text == "[sticker: Wave]"


def adapter_for(fake: FakeDiscord) -> DiscordAdapter:
    return DiscordAdapter(
        channel_id=int(CHANNEL_ID),
        token=fake.token,
        api_url=fake.api_url,
        gateway_url=fake.gateway_url,
        ready_timeout=0.1,
    )


async def test_stickers_system_messages_mentions_threads_and_the_bot_itself() -> None:
    items: list[IngestItem] = []
    ronni = {
        "id": "81384788765712384",
        "username": "ronni",
        "discriminator": "0",
        "global_name": "Ronni",
        "avatar": None,
    }
    async with FakeDiscord().running() as fake:
        adapter = adapter_for(fake)
        task = asyncio.create_task(adapter.run(items.append))
        try:
            async with asyncio.timeout(10):
                while adapter.status.state != "connected":
                    assert not task.done(), task
                    await asyncio.sleep(0.02)
            n = 710000000000000000
            for payload in [
                fake.message(str(n + 1), "", stickers=["Wave"]),
                fake.message(str(n + 2), "", type_=7),  # a member joined
                fake.message(str(n + 3), "", type_=8),  # a boost
                fake.message(str(n + 4), "", type_=6),  # a pin: not shown
                fake.message(
                    str(n + 5),
                    f"hey <@{ronni['id']}> and <@&{MOD_ROLE_ID}> in <#{CHANNEL_ID}>",
                    mentions=[ronni],
                    mention_roles=[MOD_ROLE_ID],
                ),
                fake.message(str(n + 6), "in the thread", channel_id=THREAD_ID),
                fake.message(str(n + 7), "the bot speaking", user_id=BOT_ID, username="bot"),
                fake.message(str(n + 8), "a reply", type_=19, reply_to=str(n + 5)),
            ]:
                await fake.dispatch("MESSAGE_CREATE", payload)
            await fake.dispatch(
                "MESSAGE_DELETE",
                {"id": str(n + 6), "channel_id": THREAD_ID, "guild_id": fake.guild()["id"]},
            )
            async with asyncio.timeout(10):
                while len(items) < 7:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # anything more (the bot's line, the pin) would be here now
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    sticker, joined, boost, mention, thread, reply, deleted = items
    assert isinstance(sticker, NormalizedChatMessage) and sticker.text == "[sticker: Wave]"
    assert isinstance(joined, PlatformEvent) and joined.kind == "follow"
    assert isinstance(boost, PlatformEvent) and (boost.kind, boost.detail) == (
        "sub",
        "boosted the server",
    )
    assert isinstance(mention, NormalizedChatMessage)
    assert mention.text == "hey @Ronni and @Mods in #live-chat"
    assert isinstance(thread, NormalizedChatMessage)
    assert (thread.text, thread.thread) == ("in the thread", "setlist-requests")
    assert isinstance(reply, NormalizedChatMessage) and reply.reply_parent is not None
    assert reply.reply_parent.id == f"discord:{n + 5}"
    assert getattr(deleted, "message_id", None) == f"discord:{n + 6}"  # a thread's deletion
    assert all("bot speaking" not in getattr(item, "text", "") for item in items)
    assert len(items) == 7
