"""Twitch's EventSub mode: the real twitchio client against a local server speaking Twitch's
OAuth, Helix and EventSub WebSocket, through the worker runtime to a real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from pydantic import SecretStr

from broker import Bus, BusEvent, connect
from config import IngestSettings
from ingest.base import AdapterFatal
from ingest.runtime import Worker
from ingest.twitch_eventsub import EventSubSettings, TwitchEventSub
from tests.support.platforms.twitch_eventsub import (
    EventSubServer,
    chat_event,
    clear_event,
    clear_user_event,
    delete_event,
    emote,
    text,
)


def eventsub_settings(server: EventSubServer, **extra: object) -> EventSubSettings:
    values: dict[str, object] = {
        "twitch_client_id": server.client_id,
        "twitch_client_secret": SecretStr(server.client_secret),
        "twitch_api_url": server.api_url,
        "twitch_auth_url": server.auth_url,
        "twitch_eventsub_url": server.eventsub_url,
    }
    values.update(extra)
    return EventSubSettings(**values)


WORKER = IngestSettings(
    reconnect_attempts=2, reconnect_initial=0.05, reconnect_max=0.1, batch_interval_ms=5
)


async def collect(bus: Bus, session_id: str, count: int, timeout: float = 15) -> list[BusEvent]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        events = (await bus.replay(session_id, "0-0")).events
        if len(events) >= count:
            return events
        await asyncio.sleep(0.05)
    return (await bus.replay(session_id, "0-0")).events


async def test_chat_and_moderation_arrive_through_twitchio(bus: Bus, session_id: str) -> None:
    async with EventSubServer() as server:
        server.script = [
            chat_event(
                "cc106a89-1814-919d-454c-f4f2f970aae7",
                [text("Hi chat 😂 "), emote("Kappa", "25"), text(" and "), emote("Kappa", "25")],
                badges=[("moderator", "1"), ("subscriber", "12")],
            ),
            chat_event("m-2", [text("second")], user="other", user_id="5"),
            delete_event("m-2", user="other"),
            clear_user_event("other"),
            clear_event(),
        ]
        adapter = TwitchEventSub("Dallas", "user-token", eventsub_settings(server))
        worker = Worker(adapter, bus, session_id, WORKER)
        running = asyncio.create_task(worker.run())
        events = await collect(bus, session_id, 5)
        worker.stop()
        await running
        subscribed = sorted(s["type"] for s in server.subscriptions)

    assert subscribed == [
        "channel.chat.clear",
        "channel.chat.clear_user_messages",
        "channel.chat.message",
        "channel.chat.message_delete",
        "channel.chat.notification",
    ]
    assert [e.type for e in events] == [
        "chat.message",
        "chat.message",
        "chat.delete",
        "chat.delete",
        "chat.delete",
    ]
    first = events[0].payload
    assert first["id"] == "twitch:cc106a89-1814-919d-454c-f4f2f970aae7"
    assert first["text"] == "Hi chat 😂 Kappa and Kappa"
    assert (first["username"], first["displayName"], first["userId"]) == (
        "viewer32",
        "Viewer32",
        "4145994",
    )
    assert first["badges"] == ["moderator", "subscriber"]
    assert first["isModerator"] is True and first["isSubscriber"] is True
    assert first["emotes"] == [
        {
            "name": "Kappa",
            "url": "https://static-cdn.jtvnw.net/emoticons/v2/25/default/dark/1.0",
            "positions": [[10, 14], [20, 24]],
        }
    ]
    assert events[2].payload == {"messageId": "twitch:m-2", "reason": "deleted"}
    assert events[3].payload["username"] == "other"
    assert events[4].payload["username"] == "*"


async def test_refused_user_token_is_fatal(bus: Bus, session_id: str) -> None:
    async with EventSubServer() as server:
        adapter = TwitchEventSub("dallas", "stolen-token", eventsub_settings(server))
        with pytest.raises(AdapterFatal, match="user access token"):
            await Worker(adapter, bus, session_id, WORKER).run()
        assert server.subscriptions == []


async def test_refused_app_secret_is_fatal(bus: Bus, session_id: str) -> None:
    async with EventSubServer() as server:
        settings = eventsub_settings(server, twitch_client_secret=SecretStr("wrong"))
        adapter = TwitchEventSub("dallas", "user-token", settings)
        with pytest.raises(AdapterFatal, match="client-secret"):
            await Worker(adapter, bus, session_id, WORKER).run()


async def test_unknown_channel_is_fatal(bus: Bus, session_id: str) -> None:
    async with EventSubServer() as server:
        adapter = TwitchEventSub("nobody_here", "user-token", eventsub_settings(server))
        with pytest.raises(AdapterFatal, match="no channel named 'nobody_here'"):
            await Worker(adapter, bus, session_id, WORKER).run()


def test_needs_app_credentials_and_a_token() -> None:
    with pytest.raises(ValueError, match="--client-id"):
        TwitchEventSub("dallas", "t", EventSubSettings())
    settings = EventSubSettings(twitch_client_id="a", twitch_client_secret=SecretStr("b"))
    with pytest.raises(ValueError, match="--token"):
        TwitchEventSub("dallas", "", settings)


@pytest.mark.slow
@pytest.mark.usefixtures("session_record")
async def test_the_eventsub_command_end_to_end(redis_url: str, session_id: str) -> None:
    async with EventSubServer() as server:
        server.script = [chat_event(f"cli-{n}", [text(f"hello {n}")]) for n in range(10)]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vstudio_cli.main", "ingest", "twitch", "--eventsub",
            "--channel", "dallas", "--session", session_id, "--token", "user-token",
            "--client-id", server.client_id, "--api-url", server.api_url,
            "--auth-url", server.auth_url, "--eventsub-url", server.eventsub_url,
            "--redis-url", redis_url, "--json",
            env={**os.environ, "VSTUDIO_TWITCH_CLIENT_SECRET": server.client_secret},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        client = await connect(redis_url)
        try:
            bus = Bus(client)
            events = await collect(bus, session_id, 10)
            process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
            await client.aclose()
    assert process.returncode == 0, stderr.decode()
    assert [e.payload["text"] for e in events] == [f"hello {n}" for n in range(10)]
