"""Discord: pure mapping, and a real discord.Client driven by a local gateway and REST API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable

import pytest

from broker import Bus
from broker.models import ChatDelete, Emote, NormalizedChatMessage, Platform
from config import IngestSettings
from ingest.base import AdapterFatal, IngestItem
from ingest.discord import DiscordAdapter
from ingest.discord_map import (
    DiscordAuthor,
    DiscordChat,
    extract_custom_emotes,
    map_deletions,
    map_message,
)
from ingest.heartbeat import read_records
from ingest.runtime import Worker
from tests.support.platforms.discord import (
    BACKSTAGE_CHANNEL_ID,
    CHANNEL_ID,
    MOD_ROLE_ID,
    OTHER_CHANNEL_ID,
    OWNER_ID,
    VIP_ROLE_ID,
    FakeDiscord,
    snowflake,
)

T = 1_767_323_045_678
M1, M2, M3, M4 = (snowflake(T, n) for n in (1, 2, 3, 4))

# --- pure mapping -----------------------------------------------------------------------------


def chat(content: str = "hi", **author: object) -> DiscordChat:
    return DiscordChat(
        id=42,
        channel_id=7,
        author=DiscordAuthor(**{"id": 9, "username": "fan", "display_name": "Fan", **author}),
        content=content,
        created_at=1_767_323_045_678,
    )


def test_plain_message() -> None:
    message = map_message(chat())
    assert message == NormalizedChatMessage(
        id="discord:42",
        platform=Platform.DISCORD,
        username="fan",
        display_name="Fan",
        text="hi",
        badges=None,
        is_subscriber=False,
        is_moderator=False,
        timestamp=1_767_323_045_678,
        user_id="9",
    )


def test_moderator_from_permissions_owner_or_role_names() -> None:
    assert map_message(chat(can_moderate=True)).is_moderator
    owner = map_message(chat(is_owner=True))
    assert owner.is_moderator and owner.badges == ["owner", "moderator"]
    by_role = map_message(chat(roles=("Helpers",)), moderator_roles=["helpers"])
    assert by_role.is_moderator and by_role.badges == ["moderator", "Helpers"]
    assert not map_message(chat(roles=("Helpers",))).is_moderator


def test_roles_are_badges_and_boosters_or_roles_are_subscribers() -> None:
    booster = map_message(chat(roles=("VIP", "Artists"), is_booster=True))
    assert booster.badges == ["booster", "VIP", "Artists"] and booster.is_subscriber
    member = map_message(chat(roles=("Members",)), subscriber_roles=["MEMBERS"])
    assert member.is_subscriber and member.badges == ["subscriber", "Members"]
    bot = map_message(chat(bot=True))
    assert bot.badges == ["bot"]


def test_custom_emotes_become_names_with_positions() -> None:
    text, emotes = extract_custom_emotes(
        "hey <:blob:123456789012345678> and <a:dance:223456789012345678><:blob:123456789012345678>!"
    )
    assert text == "hey blob and danceblob!"
    assert emotes == [
        Emote(
            name="blob",
            url="https://cdn.discordapp.com/emojis/123456789012345678.png",
            positions=[(4, 7), (18, 21)],
        ),
        Emote(
            name="dance",
            url="https://cdn.discordapp.com/emojis/223456789012345678.gif",
            positions=[(13, 17)],
        ),
    ]
    assert text[4:8] == "blob" and text[13:18] == "dance"
    assert extract_custom_emotes("no <:emote> here") == ("no <:emote> here", [])


def test_attachments_and_long_text() -> None:
    with_files = DiscordChat(1, 7, DiscordAuthor(9, "fan"), "", 0, ("cat.png",))
    assert map_message(with_files).text == "[cat.png]"
    long = map_message(chat("x" * 3000))
    assert len(long.text) == 2000


def test_deletions() -> None:
    assert map_deletions([5, 3]) == [
        ChatDelete(message_id="discord:3", reason="deleted on Discord"),
        ChatDelete(message_id="discord:5", reason="deleted on Discord"),
    ]


def test_adapter_needs_a_token() -> None:
    with pytest.raises(ValueError, match="bot token"):
        DiscordAdapter(channel_id=1, token="")


# --- a real discord.Client against the local Discord ------------------------------------------


async def until(
    check: Callable[[], bool], task: asyncio.Task | None = None, timeout: float = 10.0
) -> None:
    """Wait for ``check``; if the adapter's ``task`` ends first, show why."""
    async with asyncio.timeout(timeout):
        while not check():
            if task is not None and task.done():
                task.result()
                raise AssertionError("the adapter stopped")
            await asyncio.sleep(0.02)


def adapter_for(fake: FakeDiscord, token: str | None = None) -> DiscordAdapter:
    return DiscordAdapter(
        channel_id=int(CHANNEL_ID),
        token=token or fake.token,
        api_url=fake.api_url,
        gateway_url=fake.gateway_url,
        subscriber_roles=["VIP"],
        ready_timeout=0.1,
    )


async def test_messages_and_deletions_reach_emit() -> None:
    items: list[IngestItem] = []
    async with FakeDiscord().running() as fake:
        adapter = adapter_for(fake)
        task = asyncio.create_task(adapter.run(items.append))
        try:
            await until(lambda: adapter.status.state == "connected", task)
            assert adapter.status.detail == "#live-chat as vstudio-bot"
            identify = fake.live.identify
            assert identify is not None and identify["token"] == fake.token
            assert int(identify["intents"]) & (1 << 15)  # message content
            assert fake.live.compression in ("zlib-stream", "zstd-stream")
            assert {"GET /api/v10/users/@me", "GET /api/v10/oauth2/applications/@me"} <= set(
                fake.rest_calls
            )

            await fake.dispatch(
                "MESSAGE_CREATE",
                fake.message(M1, "hello <:wave:123456789012345678>", roles=[MOD_ROLE_ID]),
            )
            await fake.dispatch(
                "MESSAGE_CREATE",
                fake.message(M2, "elsewhere", channel_id=OTHER_CHANNEL_ID),
            )
            await fake.dispatch(
                "MESSAGE_CREATE",
                fake.message(
                    M3,
                    "i boost",
                    user_id="700000000000000007",
                    username="vip",
                    global_name=None,
                    roles=[VIP_ROLE_ID],
                    premium=True,
                ),
            )
            await fake.dispatch(
                "MESSAGE_CREATE",
                fake.message(M4, "it's me", user_id=OWNER_ID, username="artist"),
            )
            await fake.dispatch(
                "MESSAGE_DELETE",
                {"id": M1, "channel_id": CHANNEL_ID, "guild_id": fake.guild()["id"]},
            )
            await fake.dispatch(
                "MESSAGE_DELETE_BULK",
                {"ids": [M4, M3], "channel_id": CHANNEL_ID, "guild_id": fake.guild()["id"]},
            )
            await fake.dispatch(
                "MESSAGE_DELETE",
                {"id": M2, "channel_id": OTHER_CHANNEL_ID, "guild_id": fake.guild()["id"]},
            )
            await until(lambda: len(items) >= 6)
            await until(lambda: fake.live.heartbeats >= 1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    mod, vip, owner = items[:3]
    assert isinstance(mod, NormalizedChatMessage)
    assert (mod.id, mod.username, mod.display_name, mod.text) == (
        f"discord:{M1}",
        "fan",
        "Fan",
        "hello wave",
    )
    assert mod.is_moderator and mod.badges == ["moderator", "Mods"]
    assert mod.emotes and mod.emotes[0].positions == [(6, 9)]
    assert mod.timestamp == 1_767_323_045_678
    assert (vip.id, vip.username, vip.display_name) == (f"discord:{M3}", "vip", "vip")
    assert vip.is_subscriber and not vip.is_moderator and vip.badges == ["booster", "VIP"]
    assert owner.is_moderator and owner.badges == ["owner", "moderator"]
    assert [d.message_id for d in items[3:]] == [f"discord:{M1}", f"discord:{M3}", f"discord:{M4}"]
    assert len(items) == 6  # the other channel's message and deletion were skipped


async def test_a_dropped_gateway_is_resumed_by_discord_py() -> None:
    items: list[IngestItem] = []
    async with FakeDiscord().running() as fake:
        adapter = adapter_for(fake)
        task = asyncio.create_task(adapter.run(items.append))
        try:
            await until(lambda: adapter.status.state == "connected", task)
            await fake.dispatch("MESSAGE_CREATE", fake.message(M1, "before"))
            await until(lambda: len(items) == 1)
            await fake.drop()
            await until(lambda: fake.resumes == 1 and fake.ready.is_set())
            assert fake.live.identify is not None and fake.live.identify["seq"] >= 3
            await fake.dispatch("MESSAGE_CREATE", fake.message(M2, "after"))
            await until(lambda: len(items) == 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [i.id for i in items] == [f"discord:{M1}", f"discord:{M2}"]


async def test_a_wrong_token_is_fatal() -> None:
    async with FakeDiscord().running() as fake:
        adapter = adapter_for(fake, token="WRONG")
        with pytest.raises(AdapterFatal, match="refused the bot token"):
            await asyncio.wait_for(adapter.run(lambda item: None), 10)


async def test_message_content_intent_not_granted_is_fatal() -> None:
    async with FakeDiscord(allow_message_content=False).running() as fake:
        adapter = adapter_for(fake)
        with pytest.raises(AdapterFatal, match="Message Content Intent"):
            await asyncio.wait_for(adapter.run(lambda item: None), 10)


async def test_a_channel_the_bot_cannot_see_is_fatal() -> None:
    async with FakeDiscord().running() as fake:
        adapter = DiscordAdapter(
            channel_id=999,
            token=fake.token,
            api_url=fake.api_url,
            gateway_url=fake.gateway_url,
            ready_timeout=0.1,
        )
        with pytest.raises(AdapterFatal, match=r"cannot see channel 999.*Artist Fans"):
            await asyncio.wait_for(adapter.run(lambda item: None), 10)


# --- through the worker runtime to the bus, and through the command ---------------------------


async def wait_for_events(bus: Bus, session_id: str, count: int) -> list:
    async with asyncio.timeout(10):
        while len(events := (await bus.replay(session_id, "0-0")).events) < count:
            await asyncio.sleep(0.02)
    return events


async def test_worker_publishes_messages_and_deletions_to_the_bus(
    bus: Bus, session_id: str
) -> None:
    settings = IngestSettings(batch_interval_ms=5, heartbeat_ttl=5)
    async with FakeDiscord().running() as fake:
        adapter = adapter_for(fake)
        worker = Worker(adapter, bus, session_id, settings)
        task = asyncio.create_task(worker.run())
        await until(lambda: adapter.status.state == "connected", task)
        await fake.dispatch("MESSAGE_CREATE", fake.message(M1, "one", roles=[VIP_ROLE_ID]))
        await fake.dispatch("MESSAGE_CREATE", fake.message(M2, "two"))
        await fake.dispatch("MESSAGE_DELETE", {"id": M1, "channel_id": CHANNEL_ID})
        events = await wait_for_events(bus, session_id, 3)
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert [(e.type, e.payload.get("id") or e.payload.get("messageId")) for e in events] == [
        ("chat.message", f"discord:{M1}"),
        ("chat.message", f"discord:{M2}"),
        ("chat.delete", f"discord:{M1}"),
    ]
    assert events[0].payload["isSubscriber"] is True
    assert events[0].payload["badges"] == ["subscriber", "VIP"]


@pytest.mark.slow
@pytest.mark.usefixtures("session_record")
async def test_the_command_reads_the_channel_until_ctrl_c(
    redis_url: str, bus: Bus, session_id: str
) -> None:
    async with FakeDiscord().running() as fake:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "vstudio_cli.main",
            "ingest",
            "discord",
            "--session",
            session_id,
            "--channel-id",
            CHANNEL_ID,
            "--api-url",
            fake.api_url,
            "--gateway-url",
            fake.gateway_url,
            "--redis-url",
            redis_url,
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "VSTUDIO_DISCORD_TOKEN": fake.token, "VSTUDIO_HEARTBEAT_TTL": "2"},
        )
        async with asyncio.timeout(30):
            while not any(  # the worker's heartbeat says the bot is in the channel
                record.get("state") == "connected"
                for record in await read_records(bus.redis, session_id)
            ):
                await asyncio.sleep(0.05)
            await fake.dispatch("MESSAGE_CREATE", fake.message(M3, "from the command"))
            await wait_for_events(bus, session_id, 1)
            process.send_signal(signal.SIGINT)
            stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr
    assert b"Traceback" not in stderr
    [stopped] = [json.loads(line) for line in stdout.splitlines() if b'"stopped"' in line]
    assert stopped["published"] == 1 and stopped["platform"] == "discord"
    [event] = (await bus.replay(session_id, "0-0")).events
    assert event.payload["id"] == f"discord:{M3}" and event.payload["text"] == "from the command"


@pytest.mark.slow
@pytest.mark.usefixtures("session_record")
async def test_the_command_reads_several_channels_over_one_gateway(
    redis_url: str, bus: Bus, session_id: str
) -> None:
    channels = [CHANNEL_ID, OTHER_CHANNEL_ID, BACKSTAGE_CHANNEL_ID]
    async with FakeDiscord().running() as fake:
        # both spellings; #live-chat twice (read once); 999, a channel the bot cannot see
        flags = ["--channel-id", CHANNEL_ID, "--channel", OTHER_CHANNEL_ID]
        flags += ["--channel", BACKSTAGE_CHANNEL_ID, "--channel", CHANNEL_ID, "--channel", "999"]
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "vstudio_cli.main", "ingest", "discord"),
            *("--session", session_id, *flags),
            *("--api-url", fake.api_url, "--gateway-url", fake.gateway_url),
            *("--redis-url", redis_url, "--json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "VSTUDIO_DISCORD_TOKEN": fake.token, "VSTUDIO_HEARTBEAT_TTL": "2"},
        )
        async with asyncio.timeout(30):
            while sum(  # every channel the bot sees is read; 999 (it cannot) stopped alone
                record.get("state") == "connected"
                for record in await read_records(bus.redis, session_id)
            ) < len(channels):
                await asyncio.sleep(0.05)
            for n, channel in enumerate(channels):
                message = fake.message(snowflake(T, 10 + n), f"to {n}", channel_id=channel)
                await fake.dispatch("MESSAGE_CREATE", message)
            await wait_for_events(bus, session_id, len(channels))
            process.send_signal(signal.SIGINT)
            stdout, stderr = await process.communicate()
    assert process.returncode == 1, stderr  # the channel the bot cannot see failed
    assert b"cannot see channel 999" in stderr and b"Traceback" not in stderr
    assert len(fake.connections) == 1 and fake.identifies == 1  # one gateway for all
    stopped = [json.loads(line) for line in stdout.splitlines() if b'"stopped"' in line]
    assert sorted((s["target"], s["published"]) for s in stopped) == sorted(
        [(f"channel:{c}", 1) for c in channels] + [("channel:999", 0)]
    )
    events = (await bus.replay(session_id, "0-0")).events
    assert sorted(e.payload["text"] for e in events) == ["to 0", "to 1", "to 2"]


@pytest.mark.slow  # discord.py waits 5 s before identifying again, as Discord asks
async def test_a_new_session_reads_back_what_was_said_meanwhile() -> None:
    items: list[IngestItem] = []
    async with FakeDiscord().running() as fake:
        adapter = adapter_for(fake)
        task = asyncio.create_task(adapter.run(items.append))
        try:
            await until(lambda: adapter.status.state == "connected", task)
            await fake.dispatch("MESSAGE_CREATE", fake.message(M1, "seen live"))
            await until(lambda: len(items) == 1, task)
            await fake.invalidate_session()  # not resumable: discord.py identifies anew
            fake.history += [fake.message(M2, "said meanwhile"), fake.message(M3, "and this")]
            await until(lambda: len(fake.connections) == 2 and fake.ready.is_set(), task)
            await until(lambda: len(items) == 3, task)
            await fake.dispatch("MESSAGE_CREATE", fake.message(M4, "live again"))
            await until(lambda: len(items) == 4, task)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [(i.id, i.text) for i in items] == [
        (f"discord:{M1}", "seen live"),
        (f"discord:{M2}", "said meanwhile"),
        (f"discord:{M3}", "and this"),
        (f"discord:{M4}", "live again"),
    ]
    assert fake.resumes == 0 and adapter.last_message_id == int(M4)
    assert f"GET /api/v10/channels/{CHANNEL_ID}/messages" in fake.rest_calls
