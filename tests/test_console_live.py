"""The producer console driven by key presses against a real ``vstudio serve`` and real Redis.

Other people in the session are real clients too: viewers vote, chat, react and tip over REST
and WebSocket with :class:`VStudioClient`, and what they see is checked alongside the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.support.live_server import LiveServer
from vstudio_cli.client import ApiError, Backoff, LiveConnection, VStudioClient
from vstudio_cli.console.app import ConsoleApp
from vstudio_cli.console.link import SessionLink
from vstudio_cli.console.model import Link
from vstudio_cli.console.widgets.confirm import Confirm
from vstudio_cli.console.widgets.poll import PollPanel

SIZE = (80, 24)


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def until(pilot: Pilot[None], check: Callable[[], object], timeout: float = 10.0) -> None:
    """Let the app run until ``check()`` holds; fail with what was awaited otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {check.__doc__ or check}")
        await pilot.pause(0.05)


class Crew:
    """A live session with its artist, a producer and helpers to make viewers."""

    def __init__(
        self, server: LiveServer, session: dict[str, Any], artist: str, producer: str
    ) -> None:
        self.server = server
        self.session = session
        self.id: str = session["id"]
        self.artist = artist
        self.producer = producer
        self.clients: list[VStudioClient] = []

    def client(self, user: str, role: str) -> VStudioClient:
        client = VStudioClient(self.server.base_url, self.server.token(user, role))
        self.clients.append(client)
        return client

    def console(self, user: str, role: str, **live_options: Any) -> ConsoleApp:
        link = SessionLink(self.client(user, role), self.id, live_options=live_options)
        return ConsoleApp(link)

    @contextlib.asynccontextmanager
    async def viewer(self, name: str | None = None) -> AsyncIterator[LiveConnection]:
        client = self.client(name or _id("viewer"), "viewer")
        async with client.live(self.id, "viewer") as live:
            yield live

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
async def crew(live_server: LiveServer) -> AsyncIterator[Crew]:
    artist, producer = _id("artist"), _id("producer")
    session = await live_server.live_session(artist, producerIds=[producer], title="Console test")
    crew = Crew(live_server, session, artist, producer)
    yield crew
    await crew.close()


async def connected(pilot: Pilot[None], app: ConsoleApp) -> None:
    def live() -> bool:
        """the console to be live"""
        return app.state.link is Link.LIVE and app.state.status == "live"

    await until(pilot, live)


async def test_create_a_poll_from_the_form_and_watch_votes_arrive(crew: Crew) -> None:
    app = crew.console(crew.producer, "producer")
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        assert app.state.role == "producer" and app.state.title == "Console test"
        await pilot.press("p")
        await pilot.press(*"Encore?", "enter", *"Yes", "enter", *"No way", "tab", "6", "0")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.state.poll is not None)
        poll = app.state.poll
        assert poll is not None and poll.options == ["Yes", "No way"] and poll.active
        assert poll.ends_at is not None

        for _ in range(3):
            await crew.client(_id("fan"), "viewer").vote(crew.id, poll.id, 0)
        async with crew.viewer() as live:
            await live.request("poll.vote", {"pollId": poll.id, "optionIndex": 1})

        def counted() -> bool:
            """three votes for Yes and one for No way"""
            return app.state.poll is not None and app.state.poll.results == [3, 1]

        await until(pilot, counted)
        shown = str(app.query_one(PollPanel).render())
        assert "Encore?" in shown and "4 votes" in shown and "75%" in shown

        await pilot.press("e")  # ending a poll is final: it asks first
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("n")
        await pilot.pause(0.3)
        assert app.state.poll.active and not isinstance(app.screen, Confirm)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await until(pilot, lambda: not app.state.poll.active)  # type: ignore[union-attr]  # the poll is on screen by now
        async with crew.viewer() as late:
            state = await late.wait_for("session.state")
        ended = next(p for p in state["payload"]["polls"] if p["id"] == poll.id)
        assert ended["status"] == "ended" and ended["results"] == [3, 1]


async def test_delete_a_message_and_mute_its_author(crew: Crew) -> None:
    fan = _id("fan")
    fan_client = crew.client(fan, "viewer")
    app = crew.console(crew.producer, "producer")
    async with app.run_test(size=SIZE) as pilot, crew.viewer() as watcher:
        await connected(pilot, app)
        await fan_client.chat(crew.id, "hello everyone")
        sent = await fan_client.chat(crew.id, "buy followers at example.com")
        await until(pilot, lambda: app.state.find_message(sent["id"]) is not None)
        await until(pilot, lambda: app.chat.selected() is not None)
        selected = app.chat.selected()
        assert selected is not None and selected.id == sent["id"]

        await pilot.press("d")
        line = app.state.find_message(sent["id"])
        await until(pilot, lambda: line is not None and line.deleted)
        deletion = await watcher.wait_for("chat.delete")
        assert deletion["payload"]["messageId"] == sent["id"]
        assert app.state.chat[0].deleted is False

        await pilot.press("m")
        await until(pilot, lambda: fan in app.state.muted)
        with pytest.raises(ApiError) as refused:
            await fan_client.chat(crew.id, "am I muted?")
        assert refused.value.code == 4004 and "muted" in refused.value.message

        await pilot.press("m")
        await until(pilot, lambda: fan not in app.state.muted)
        await fan_client.chat(crew.id, "back again")


async def test_toggle_chat_and_reactions(crew: Crew) -> None:
    fan_client = crew.client(_id("fan"), "viewer")
    app = crew.console(crew.producer, "producer")
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("c")
        await until(pilot, lambda: app.state.chat_enabled is False)
        with pytest.raises(ApiError, match="chat is turned off"):
            await fan_client.chat(crew.id, "anyone?")
        await pilot.press("r")
        await until(pilot, lambda: app.state.reactions_enabled is False)
        session = await fan_client.get_session(crew.id)
        assert session["chatEnabled"] is False and session["reactionsEnabled"] is False
        await pilot.press("c", "r")
        await until(pilot, lambda: app.state.chat_enabled and app.state.reactions_enabled)


async def test_announcements_reach_the_dashboard(crew: Crew) -> None:
    app = crew.console(crew.producer, "producer")
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        producer = crew.client(crew.producer, "producer")
        await producer.call(
            "POST", "/v1/vstudio/announcements", {"text": "back in 5", "sessionId": crew.id}
        )

        def shown() -> bool:
            """the announcement in the console's chat"""
            return any(line.text == "📣 back in 5" for line in app.state.chat)

        await until(pilot, shown)


async def test_viewers_reactions_and_tips_reach_the_dashboard(crew: Crew) -> None:
    app = crew.console(crew.producer, "producer")
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        before = app.state.viewer_count
        async with crew.viewer("maria") as live:
            await until(pilot, lambda: app.state.viewer_count == before + 1)
            for _ in range(3):
                await live.request("reaction.send", {"emoji": "🔥"})
            await live.request("tip.send", {"amount": 5, "currency": "USD", "message": "love it"})
            await until(pilot, lambda: app.state.reactions.totals.get("🔥") == 3)
            await until(pilot, lambda: app.state.tip_totals.get("USD") == 5.0)
            assert app.state.tips[0].message == "love it"
        await until(pilot, lambda: app.state.viewer_count == before)


async def test_end_the_session_only_after_confirming(crew: Crew) -> None:
    app = crew.console(crew.artist, "artist")
    async with app.run_test(size=SIZE) as pilot, crew.viewer() as watcher:
        await connected(pilot, app)
        assert app.state.role == "artist"
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause(0.3)
        session = await crew.client(crew.artist, "artist").get_session(crew.id)
        assert session["status"] == "live" and app.state.status == "live"

        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await until(pilot, lambda: app.state.status == "ended")
        ended = await watcher.wait_for("session.end")
        assert ended["payload"]["endedBy"]
        session = await crew.client(crew.artist, "artist").get_session(crew.id)
        assert session["status"] == "ended"
        await until(pilot, lambda: app.state.link is Link.CLOSED)


async def test_a_producer_is_not_offered_the_artist_controls(crew: Crew) -> None:
    app = crew.console(crew.producer, "producer")
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        assert app.check_action("end_session", ()) is False
        assert "x" not in footer_keys(app)
        await pilot.press("x", "y")
        await pilot.pause(0.3)
        assert app.state.status == "live" and not isinstance(app.screen, Confirm)
        assert app.notices[-1] == "Only the session's artist may end it; you are its producer"
        session = await crew.client(crew.producer, "producer").get_session(crew.id)
        assert session["status"] == "live"


def footer_keys(app: ConsoleApp) -> set[str]:
    """The keys the footer offers now."""
    return {
        key
        for key, active in app.screen.active_bindings.items()
        if active.binding.show and active.enabled
    }


async def test_an_ended_session_offers_only_the_keys_that_still_work(crew: Crew) -> None:
    app = crew.console(crew.artist, "artist")
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        assert {"d", "m", "p", "c", "r", "x"} <= footer_keys(app)
        await crew.client(crew.artist, "artist").end_session(crew.id)
        await until(pilot, lambda: app.state.status == "ended")
        await pilot.pause(0.2)
        assert footer_keys(app) == {"f", "slash", "q"}
        await pilot.press("c")
        await pilot.pause(0.2)
        assert app.notices[-1] == "The session has ended; nothing can change it now"
        assert not isinstance(app.screen, Confirm)


async def test_moving_up_the_chat_pauses_following_and_says_so(crew: Crew) -> None:
    fan = crew.client(_id("fan"), "viewer")
    app = crew.console(crew.producer, "producer")
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        for n in range(3):
            await fan.chat(crew.id, f"line {n}")
        await until(pilot, lambda: app.chat.table.row_count == 3)
        await until(pilot, lambda: app.chat.table.cursor_row == 2)
        assert app.chat.border_subtitle is None

        await pilot.press("up")
        await pilot.pause(0.1)
        assert app.chat.border_subtitle == "paused on a message: End follows again"
        last = await fan.chat(crew.id, "line 3")
        await until(pilot, lambda: app.chat.table.row_count == 4)
        assert app.chat.selected().text == "line 1"  # type: ignore[union-attr]  # rows exist
        assert app.chat.border_subtitle == "paused on a message: 1 new below, End follows again"

        await pilot.press("end")
        await pilot.pause(0.1)
        assert app.chat.selected().id == last["id"]  # type: ignore[union-attr]  # rows exist
        assert app.chat.border_subtitle is None
        await fan.chat(crew.id, "line 4")
        await until(pilot, lambda: app.chat.table.row_count == 5)
        await until(pilot, lambda: app.chat.table.cursor_row == 4)  # following again


async def test_a_stranger_is_told_plainly(crew: Crew) -> None:
    app = crew.console(_id("stranger"), "viewer")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.link is Link.CLOSED)
        assert app.notices == ["you are not a producer of this session"]
        assert "not a producer" in (app.state.link_detail or "")


async def _proxy(
    target_port: int,
) -> tuple[asyncio.Server, set[asyncio.StreamWriter], asyncio.Event]:
    """A TCP relay to the server whose connections the test can cut, like a network drop;
    while ``down`` is set, new connections are cut at once too (the network is still out)."""
    writers: set[asyncio.StreamWriter] = set()
    down = asyncio.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if down.is_set():
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        writers.update({writer, up_writer})
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    return server, writers, down


async def test_connection_drop_shows_reconnecting_then_resumed(crew: Crew) -> None:
    proxy, writers, down = await _proxy(crew.server.port)
    port = proxy.sockets[0].getsockname()[1]
    client = VStudioClient(f"http://127.0.0.1:{port}", crew.server.token(crew.producer, "producer"))
    crew.clients.append(client)
    fast = Backoff(initial=0.2, maximum=0.5, retries=5, jitter=0.0)
    app = ConsoleApp(SessionLink(client, crew.id, live_options={"backoff": fast}))
    fan_client = crew.client(_id("fan"), "viewer")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot, app)
            down.set()  # a reconnect faster than the pilot's look must not skip RECONNECTING
            for writer in list(writers):
                writer.transport.abort()
            writers.clear()
            await until(pilot, lambda: app.state.link is Link.RECONNECTING)
            sent = await fan_client.chat(crew.id, "said while the console was away")
            down.clear()
            await until(pilot, lambda: app.state.link is Link.RESUMED)
            await until(pilot, lambda: app.state.find_message(sent["id"]) is not None)
            assert app.state.link_detail is None
    finally:
        proxy.close()


async def test_start_a_scheduled_session(live_server: LiveServer) -> None:
    artist = _id("artist")
    token = live_server.token(artist, "artist")
    status, session = await live_server.call(
        "POST", "/v1/vstudio/sessions", token=token, json={"title": "Later tonight"}
    )
    assert status == 201, session
    crew = Crew(live_server, session, artist, _id("producer"))
    app = crew.console(artist, "artist")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.state.link is Link.LIVE)
            assert app.state.status == "scheduled"
            assert app.check_action("start", ()) is True

            other = await live_server.live_session(artist, title="Already on air")
            await pilot.press("s")
            await until(pilot, lambda: any("already has a live session" in n for n in app.notices))
            assert app.state.status == "scheduled"
            await crew.client(artist, "artist").end_session(other["id"])

            await pilot.press("s")
            await until(pilot, lambda: app.state.status == "live")
            assert app.check_action("start", ()) is False
            current = await crew.client(artist, "artist").get_session(crew.id)
            assert current["status"] == "live" and current["actualStart"]
    finally:
        await crew.close()
