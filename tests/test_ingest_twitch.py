"""The Twitch adapter end to end: a local IRC-over-WebSocket server, the real adapter and
worker runtime, a real Redis; what reaches the session's stream is checked."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
from pydantic import SecretStr

from broker import Bus, BusEvent
from config import IngestSettings
from ingest.base import AdapterFatal
from ingest.runtime import Worker, WorkerGaveUp
from ingest.twitch import TwitchChat
from tests.support.platforms.twitch_irc import (
    CLOSE,
    DROP,
    Expect,
    Step,
    TwitchIrcServer,
    privmsg,
)


def fast_settings(url: str, **extra: object) -> IngestSettings:
    values: dict[str, object] = {
        "twitch_irc_url": url,
        "reconnect_initial": 0.02,
        "reconnect_max": 0.1,
        "reconnect_attempts": 3,
        "batch_interval_ms": 5,
        "heartbeat_ttl": 5,
    }
    values.update(extra)
    return IngestSettings(**values)


async def wait_for_events(
    bus: Bus, session_id: str, count: int, timeout: float = 10.0
) -> list[BusEvent]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = (await bus.replay(session_id, "0-0")).events
        if len(events) >= count or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.02)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


EMOTE_LINE = privmsg(
    "b34ccfc7-4977-403a-8a94-33c6bac34fb8",
    "Kappa Keepo Kappa",
    emotes="25:0-4,12-16/1902:6-10",
    badges="moderator/1,subscriber/12",
)
UNICODE_LINE = privmsg("u-1", "日本語 😂 Kappa", emotes="25:6-10", user="yume")


async def test_chat_deletions_ping_reconnect_and_drop_reach_the_bus(
    bus: Bus, session_id: str
) -> None:
    script_one: list[Step] = [
        EMOTE_LINE,
        "PING :tmi.twitch.tv",
        Expect("PONG"),
        UNICODE_LINE,
        "@login=ronni;room-id=;target-msg-id=u-1;tmi-sent-ts=1700000000500 "
        ":tmi.twitch.tv CLEARMSG #dallas :日本語 😂 Kappa",
        "@ban-duration=600;room-id=1337;target-user-id=4242;tmi-sent-ts=1700000000600 "
        ":tmi.twitch.tv CLEARCHAT #dallas :ronni",
        "\x00 total garbage \x01",
        "@msg-id=emote_only_on :tmi.twitch.tv NOTICE #dallas :This room is in emote-only mode.",
        ":tmi.twitch.tv RECONNECT",
    ]
    script_two = [privmsg("m-2", "after reconnect"), DROP]
    script_three = [privmsg("m-3", "after the drop"), ":tmi.twitch.tv CLEARCHAT #dallas"]
    async with TwitchIrcServer([script_one, script_two, script_three]) as server:
        adapter = TwitchChat("Dallas", fast_settings(server.url))
        worker = Worker(adapter, bus, session_id, fast_settings(server.url))
        running = asyncio.create_task(worker.run())
        events = await wait_for_events(bus, session_id, 7)
        worker.stop()
        await running

    assert [event.type for event in events] == [
        "chat.message",
        "chat.message",
        "chat.delete",
        "chat.delete",
        "chat.message",
        "chat.message",
        "chat.delete",
    ]
    first = events[0].payload
    assert first["id"] == "twitch:b34ccfc7-4977-403a-8a94-33c6bac34fb8"
    assert first["username"] == "ronni" and first["displayName"] == "Ronni"
    assert first["isModerator"] is True and first["isSubscriber"] is True
    assert first["badges"] == ["moderator", "subscriber"]
    assert first["emotes"][0] == {
        "name": "Kappa",
        "url": "https://static-cdn.jtvnw.net/emoticons/v2/25/default/dark/1.0",
        "positions": [[0, 4], [12, 16]],
    }
    assert events[1].payload["text"] == "日本語 😂 Kappa"
    assert events[1].payload["emotes"][0]["name"] == "Kappa"
    assert events[2].payload == {"messageId": "twitch:u-1", "reason": "deleted by a moderator"}
    assert events[3].payload == {
        "username": "ronni",
        "platform": "twitch",
        "reason": "timed out for 600 s",
    }
    assert events[6].payload["username"] == "*"
    assert all(event.kind == "chat" for event in events)

    assert server.connections == 3
    assert worker.stats.reconnects == 2
    assert any(line.startswith("PONG") for line in server.received)
    assert "CAP REQ :twitch.tv/tags twitch.tv/commands" in server.received
    assert any(line.startswith("NICK justinfan") for line in server.received)
    assert server.received.count("JOIN #dallas") == 3
    assert adapter.protocol is not None
    assert worker.stats.published == 7 and worker.pending == 0
    assert worker.stats.rejected == 1  # the garbage line, skipped and counted
    assert worker.stats.state == "stopped"
    assert await bus.redis.exists(f"vstudio:ingest:worker:{worker.worker_id}") == 0


async def test_two_workers_on_one_channel_publish_each_message_once(
    bus: Bus, session_id: str
) -> None:
    lines = [privmsg(f"dup-{n}", f"message {n}") for n in range(50)]
    async with TwitchIrcServer([lines, lines]) as server:
        settings = fast_settings(server.url)
        workers = [Worker(TwitchChat("dallas", settings), bus, session_id, settings) for _ in "ab"]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        await until(lambda: sum(w.stats.received for w in workers) == 100)
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)
    events = (await bus.replay(session_id, "0-0")).events
    assert sorted(event.payload["id"] for event in events) == sorted(
        f"twitch:dup-{n}" for n in range(50)
    )
    assert sum(w.stats.published for w in workers) == 50
    assert sum(w.stats.duplicates for w in workers) == 50


async def test_a_working_connection_resets_the_attempt_count(bus: Bus, session_id: str) -> None:
    scripts = [[privmsg(f"r-{n}", f"hello {n}"), DROP] for n in range(5)]
    async with TwitchIrcServer([*scripts, [privmsg("r-last", "stable")]]) as server:
        settings = fast_settings(server.url, reconnect_attempts=2)
        worker = Worker(TwitchChat("dallas", settings), bus, session_id, settings)
        running = asyncio.create_task(worker.run())
        events = await wait_for_events(bus, session_id, 6)
        worker.stop()
        await running
    assert len(events) == 6
    assert worker.stats.reconnects == 5


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_gives_up_with_a_clear_error_after_the_attempts(bus: Bus, session_id: str) -> None:
    settings = fast_settings(f"ws://127.0.0.1:{_closed_port()}/", reconnect_attempts=3)
    worker = Worker(TwitchChat("dallas", settings), bus, session_id, settings)
    with pytest.raises(WorkerGaveUp) as caught:
        await worker.run()
    message = str(caught.value)
    assert "twitch #dallas" in message and "gave up after 3" in message
    assert "ClientConnectorError" in message or "Connect" in message
    assert worker.stats.reconnects == 2 and worker.stats.state == "failed"


async def test_connection_closed_before_login_counts_as_a_failure(
    bus: Bus, session_id: str
) -> None:
    async with TwitchIrcServer(close_before_login=True) as server:
        settings = fast_settings(server.url, reconnect_attempts=3)
        worker = Worker(TwitchChat("dallas", settings), bus, session_id, settings)
        with pytest.raises(WorkerGaveUp, match="closed the connection"):
            await worker.run()
        assert server.connections == 3


async def test_refused_token_is_fatal_and_not_retried(bus: Bus, session_id: str) -> None:
    async with TwitchIrcServer(valid_tokens={"good-token"}) as server:
        settings = fast_settings(
            server.url, twitch_token=SecretStr("bad-token"), twitch_nick="MyBot"
        )
        worker = Worker(TwitchChat("dallas", settings), bus, session_id, settings)
        with pytest.raises(AdapterFatal, match="Login authentication failed"):
            await worker.run()
    assert server.connections == 1 and worker.stats.reconnects == 0
    assert worker.stats.state == "failed"
    assert "PASS oauth:bad-token" in server.received and "NICK mybot" in server.received


async def test_accepted_token_logs_in_as_the_nick(bus: Bus, session_id: str) -> None:
    async with TwitchIrcServer([[privmsg("t-1", "hi bot")]], valid_tokens={"good"}) as server:
        settings = fast_settings(server.url, twitch_token=SecretStr("good"), twitch_nick="MyBot")
        worker = Worker(TwitchChat("dallas", settings), bus, session_id, settings)
        running = asyncio.create_task(worker.run())
        events = await wait_for_events(bus, session_id, 1)
        assert worker.stats.state == "connected" or worker.adapter.status.state == "connected"
        assert "joined #dallas as mybot" in worker.adapter.status.detail
        worker.stop()
        await running
    assert [event.payload["text"] for event in events] == ["hi bot"]


async def test_suspended_channel_is_fatal(bus: Bus, session_id: str) -> None:
    notice = (
        "@msg-id=msg_channel_suspended :tmi.twitch.tv NOTICE #gone "
        ":This channel does not exist or has been suspended."
    )
    async with TwitchIrcServer([[notice, CLOSE]]) as server:
        settings = fast_settings(server.url)
        worker = Worker(TwitchChat("gone", settings), bus, session_id, settings)
        with pytest.raises(AdapterFatal, match="suspended"):
            await worker.run()
    assert server.connections == 1


def test_token_without_nick_is_refused() -> None:
    with pytest.raises(ValueError, match="--nick"):
        TwitchChat("dallas", IngestSettings(twitch_token=SecretStr("x")))


async def test_a_silent_connection_is_replaced(bus: Bus, session_id: str) -> None:
    scripts = [[privmsg("quiet-1", "then silence")], [privmsg("quiet-2", "new connection")]]
    async with TwitchIrcServer(scripts) as server:
        settings = fast_settings(server.url)
        adapter = TwitchChat("dallas", settings, idle_timeout=0.3)
        worker = Worker(adapter, bus, session_id, settings)
        running = asyncio.create_task(worker.run())
        events = await wait_for_events(bus, session_id, 2)
        worker.stop()
        await running
    assert [event.payload["id"] for event in events] == ["twitch:quiet-1", "twitch:quiet-2"]
    assert worker.stats.reconnects >= 1 and server.connections >= 2
