"""A Twitch channel that does not exist (issue 14): Twitch never answers its JOIN, so the
protocol times the JOIN out (tested without I/O), the adapter stops with a clear error instead
of staying "connected" forever, and ``vstudio ingest twitch`` exits 4."""

from __future__ import annotations

import asyncio
import sys

import pytest

from broker import Bus
from ingest.base import AdapterFatal, TargetNotFound
from ingest.runtime import Worker
from ingest.twitch import ChannelFatal, ChannelNotFound, TwitchChat, TwitchProtocol
from tests.support.platforms.twitch_irc import TwitchIrcServer, privmsg
from tests.test_ingest_twitch import fast_settings, wait_for_events

ROOMSTATE = "@emote-only=0;room-id=1337;slow=0 :tmi.twitch.tv ROOMSTATE #{}"

# --- the protocol, without I/O -------------------------------------------------------------------


def test_an_unanswered_join_is_overdue_after_the_timeout() -> None:
    protocol = TwitchProtocol("nosuch", "justinfan1", join_timeout=5.0)
    assert protocol.hello(now=100.0)[-1] == "JOIN #nosuch"
    assert protocol.next_deadline() == 105.0
    assert protocol.overdue(104.9) == []
    assert protocol.overdue(105.0) == ["nosuch"]
    assert protocol.overdue(200.0) == []  # reported once
    assert protocol.next_deadline() is None


def test_roomstate_answers_the_join() -> None:
    protocol = TwitchProtocol("dallas", "justinfan1", join_timeout=5.0)
    protocol.hello(now=0.0)
    routed = protocol.route(ROOMSTATE.format("dallas"))
    assert routed.channel == "dallas" and routed.answered
    assert protocol.next_deadline() is None and protocol.overdue(1000.0) == []
    assert protocol.state == "joined"
    assert not protocol.route(ROOMSTATE.format("dallas")).answered  # a later mode change


def test_many_channels_time_out_one_by_one() -> None:
    protocol = TwitchProtocol("", "justinfan1", join_timeout=5.0)
    assert "JOIN" not in " ".join(protocol.hello())
    assert protocol.join("a", 0.0) == "JOIN #a"
    protocol.join("b", 1.0)
    protocol.join("c", 2.0)
    assert protocol.route(ROOMSTATE.format("a")).answered
    assert protocol.part("c") == "PART #c"  # left before Twitch answered: not overdue
    assert protocol.next_deadline() == 6.0
    assert protocol.overdue(5.5) == []
    assert protocol.overdue(6.0) == ["b"]


def test_lines_are_routed_to_their_channel() -> None:
    protocol = TwitchProtocol("", "justinfan1")
    chat = protocol.route(privmsg("r-1", "#hashtag not a channel", channel="Bravo"))
    assert chat.channel == "bravo" and len(chat.items) == 1
    assert protocol.route("PING :tmi.twitch.tv") == (None, [], ["PONG tmi.twitch.tv"], False)
    notice = protocol.route("@msg-id=x :tmi.twitch.tv NOTICE * :#alpha whatever")
    assert notice.channel is None


def test_a_channel_notice_fails_only_that_channel() -> None:
    protocol = TwitchProtocol("", "justinfan1")
    with pytest.raises(ChannelFatal) as banned:
        protocol.route("@msg-id=msg_banned :tmi.twitch.tv NOTICE #bravo :You are banned.")
    assert banned.value.channel == "bravo" and not isinstance(banned.value, TargetNotFound)
    with pytest.raises(ChannelNotFound) as suspended:
        protocol.route(
            "@msg-id=msg_channel_suspended :tmi.twitch.tv NOTICE #gone :This channel does not "
            "exist or has been suspended."
        )
    assert suspended.value.channel == "gone" and isinstance(suspended.value, TargetNotFound)
    with pytest.raises(AdapterFatal) as login:
        protocol.route(":tmi.twitch.tv NOTICE * :Login authentication failed")
    assert not isinstance(login.value, ChannelFatal)


# --- the adapter against a server that stays silent like Twitch ----------------------------------


async def test_a_channel_that_does_not_exist_stops_the_worker(bus: Bus, session_id: str) -> None:
    async with TwitchIrcServer(channels={"dallas"}) as server:
        settings = fast_settings(server.url, twitch_join_timeout=0.3)
        worker = Worker(TwitchChat("NoSuch", settings), bus, session_id, settings)
        started = asyncio.get_running_loop().time()
        with pytest.raises(ChannelNotFound) as caught:
            await asyncio.wait_for(worker.run(), 10)
        waited = asyncio.get_running_loop().time() - started
    message = str(caught.value)
    assert "#nosuch did not answer within 0.3 s of JOIN" in message
    assert "does not exist or is banned" in message
    assert 0.3 <= waited < 5
    assert server.connections == 1 and worker.stats.reconnects == 0  # not retried
    assert worker.stats.state == "failed"


async def test_a_channel_that_exists_stays_connected_past_the_timeout(
    bus: Bus, session_id: str
) -> None:
    async with TwitchIrcServer(channels={"dallas"}) as server:
        settings = fast_settings(server.url, twitch_join_timeout=0.2)
        worker = Worker(TwitchChat("dallas", settings), bus, session_id, settings)
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.6)  # three times the timeout
        assert await server.say("dallas", privmsg("late-1", "still here")) == 1
        events = await wait_for_events(bus, session_id, 1)
        assert not running.done()
        assert worker.adapter.status.state == "connected"
        assert worker.adapter.status.detail.startswith("joined #dallas")
        worker.stop()
        await running
    assert [event.payload["id"] for event in events] == ["twitch:late-1"]
    assert server.connections == 1


# --- the command: exit 4 -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("session_record")
async def test_ingest_twitch_exits_4_for_a_channel_that_does_not_exist(
    redis_url: str, session_id: str
) -> None:
    async with TwitchIrcServer(channels={"dallas"}) as server:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "vstudio_cli.main", "ingest", "twitch"],
            *["--channel", "nosuch", "--session", session_id, "--join-timeout", "0.5"],
            *["--irc-url", server.url, "--redis-url", redis_url, "--json"],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
    text = stderr.decode()
    assert process.returncode == 4, text
    assert "#nosuch did not answer within 0.5 s of JOIN" in text
    assert "does not exist or is banned" in text and "Traceback" not in text
    assert server.joins and server.joins[0][1] == "nosuch"
