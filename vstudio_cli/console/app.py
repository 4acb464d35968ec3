"""The producer console: a Textual dashboard over one session's live connection.

Frames from :class:`~.link.SessionLink` go through :func:`~.reducer.apply_frame` into the
:class:`~.model.ConsoleState`; the app then redraws the parts the update names. Key presses
become requests over the same connection; refusals come back as notifications in plain words.
Without a link (``link=None``) the app shows a given state, which is how snapshots are taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Footer

from vstudio_cli.client import ApiError
from vstudio_cli.console.errors import plain_error
from vstudio_cli.console.filters import next_platform
from vstudio_cli.console.link import SessionLink
from vstudio_cli.console.model import ConsoleState, Link, mute_key
from vstudio_cli.console.reducer import Update, apply_frame
from vstudio_cli.console.widgets.chat import ChatPanel
from vstudio_cli.console.widgets.confirm import Confirm
from vstudio_cli.console.widgets.muted import MutedPanel
from vstudio_cli.console.widgets.poll import PollPanel
from vstudio_cli.console.widgets.poll_form import PollForm
from vstudio_cli.console.widgets.reactions import ReactionPanel
from vstudio_cli.console.widgets.sources import SourcesPanel
from vstudio_cli.console.widgets.status import StatusBar
from vstudio_cli.console.widgets.tips import TipsPanel

__all__ = ["ConsoleApp"]


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
SOURCES_EVERY = 5.0
"""Seconds between reads of the session's sources and their health (issue 15)."""
ENDED_ACTIONS = frozenset(
    {
        "delete",
        "mute",
        "new_poll",
        "end_poll",
        "toggle_chat",
        "toggle_reactions",
        "start",
        "end_session",
    }
)
"""Controls that change the session: none applies once it has ended."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class ConsoleApp(App[None]):
    """``vstudio console``: chat, poll, reactions, tips and controls of one session."""

    TITLE = "V Studio console"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #body { height: 1fr; }
    #side { width: 34; }
    Footer { height: 1; }
    """
    BINDINGS = [
        Binding("d", "delete", "Del"),
        Binding("m", "mute", "Mute"),
        Binding("f", "filter", "Filter"),
        Binding("slash", "search", "Find", key_display="/"),
        Binding("escape", "clear_search", "Clear", show=False),
        Binding("p", "new_poll", "Poll"),
        Binding("e", "end_poll", "End poll"),
        Binding("c", "toggle_chat", "Chat"),
        Binding("r", "toggle_reactions", "Reacts"),
        Binding("s", "start", "Start"),
        Binding("x", "end_session", "End"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        # A control that does not apply now is left out of the footer; its key still says why
        # (Textual tries the next binding of a key when check_action refuses the first).
        *(
            Binding(key, f"explain('{action}')", show=False)
            for key, action in (
                ("d", "delete"),
                ("m", "mute"),
                ("p", "new_poll"),
                ("e", "end_poll"),
                ("c", "toggle_chat"),
                ("r", "toggle_reactions"),
                ("s", "start"),
                ("x", "end_session"),
            )
        ),
    ]

    def __init__(
        self,
        link: SessionLink | None,
        state: ConsoleState | None = None,
        *,
        clock: Callable[[], int] = _now_ms,
        close_client: bool = False,
    ) -> None:
        super().__init__()
        self.link = link
        session_id = link.session_id if link is not None else "offline"
        self.state = state or ConsoleState(session_id=session_id)
        if link is None and state is None:
            self.state.link = Link.OFFLINE
        self.clock = clock
        self.close_client = close_client
        self._shown_controls: tuple[str, str | None, bool] | None = None
        self.notices: list[str] = []
        """Every notification shown, oldest first (what the producer was told)."""

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="body"):
            yield ChatPanel(self.state, id="chat")
            with Vertical(id="side"):
                yield PollPanel(id="poll")
                yield ReactionPanel(id="reactions")
                yield TipsPanel(id="tips")
                yield MutedPanel(id="muted")
                yield SourcesPanel(id="sources")
        yield Footer(compact=True)

    @property
    def chat(self) -> ChatPanel:
        return self.query_one(ChatPanel)

    def on_mount(self) -> None:
        self.sub_title = self.state.session_id
        self.redraw({"status", "chat", "poll", "reactions", "tips", "muted", "sources"})
        self.chat.table.focus()
        self.set_interval(1.0, self._tick)
        loop = asyncio.get_running_loop()
        for stop in STOP_SIGNALS:  # stop cleanly: the terminal is given back as it was
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(stop, self.exit)
        if self.link is not None:
            self.follow()

    def _controls(self) -> tuple[str, str | None, bool]:
        """What :meth:`check_action` depends on; the footer is refreshed when this changes."""
        poll = self.state.poll
        return self.state.status, self.state.role, poll is not None and poll.active

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer only the controls that make sense now; this also keeps the footer in 80 columns."""
        return self.unavailable(action) is None

    def unavailable(self, action: str) -> str | None:
        """Why a control does not apply now, in the words the producer is told; None if it does."""
        status, poll = self.state.status, self.state.poll
        running = poll is not None and poll.active
        if action == "explain":
            return None
        if status == "ended" and action in ENDED_ACTIONS:
            return "The session has ended; nothing can change it now"
        if action in ("start", "end_session") and self.state.role != "artist":
            verb = "start" if action == "start" else "end"
            return f"Only the session's artist may {verb} it; you are its {self.state.role}"
        if action == "start" and status != "scheduled":
            return f"The session is already {status}"
        if action == "new_poll" and running:
            return "A poll is running: end it first (e)"
        if action == "end_poll" and not running:
            return "No poll is running"
        return None

    def action_explain(self, action: str) -> None:
        self.notify(self.unavailable(action) or "Try again", severity="warning")

    async def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for stop in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(stop)
        self.workers.cancel_group(self, "link")
        self.workers.cancel_group(self, "sources")
        if self.link is not None:
            await self.link.close()
            if self.close_client:
                await self.link.client.close()

    def notify(self, message: str, **options: Any) -> None:
        self.notices.append(message)
        super().notify(message, **options)

    def _tick(self) -> None:
        """Once a second: the reaction rates fall and the poll's time left runs down."""
        now = self.clock()
        with contextlib.suppress(NoMatches):
            self.query_one(PollPanel).show(self.state.poll, now)
            self.query_one(ReactionPanel).show(self.state.reactions, now)

    def redraw(self, parts: set[str]) -> None:
        """Redraw the named parts from the state."""
        now = self.clock()
        controls = self._controls()
        if controls != self._shown_controls:
            self._shown_controls = controls
            self.refresh_bindings()
        if "status" in parts:
            self.query_one(StatusBar).show(self.state)
        if "chat" in parts:
            self.chat.rebuild()
        if "poll" in parts:
            self.query_one(PollPanel).show(self.state.poll, now)
        if "reactions" in parts:
            self.query_one(ReactionPanel).show(self.state.reactions, now)
        if "tips" in parts:
            self.query_one(TipsPanel).show(self.state.tips, self.state.ledger_totals)
        if "muted" in parts:
            self.query_one(MutedPanel).show(self.state.muted, self.state.muted_names)
        if "sources" in parts:
            self.query_one(SourcesPanel).show(self.state.sources)

    def show_update(self, update: Update) -> None:
        try:
            if "chat" not in update.parts:
                self.chat.restyle(update.chat_changed)
                self.chat.append(update.chat_added)
            self.redraw(update.parts)
        except NoMatches:  # a frame that arrives while the app shuts down has nowhere to go
            return
        if update.notice:
            self.notify(update.notice, severity=update.severity)

    def apply(self, frame: dict[str, Any]) -> Update:
        """Feed one frame to the state and the screen."""
        update = apply_frame(self.state, frame)
        self.show_update(update)
        return update

    # --- the connection -----------------------------------------------------------------------

    @work(exclusive=True, group="link")
    async def follow(self) -> None:
        """Connect, then apply every frame until the connection is over."""
        link = self.link
        assert link is not None
        try:
            session = await link.open()
        except ApiError as exc:
            self.state.link, self.state.link_detail = Link.CLOSED, exc.message
            self.redraw({"status"})
            words = plain_error(exc.code, exc.message, status=exc.status) if exc.status else None
            self.notify(
                words or exc.message, title="Cannot open the session", severity="error", timeout=30
            )
            return
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = f"cannot reach {link.client.base_url}: {exc or type(exc).__name__}"
            self.state.link, self.state.link_detail = Link.CLOSED, "server unreachable"
            self.redraw({"status"})
            self.notify(reason, title="Cannot open the session", severity="error", timeout=30)
            return
        self.state.role = link.role
        apply_frame(self.state, {"type": "session.update", "payload": session})
        self.apply(_pseudo("live"))
        self.watch_sources()
        async for frame in link.frames():
            self.apply(frame)
        self.apply(_pseudo("closed", reason=link.closed_reason or "connection closed"))

    @work(exclusive=True, group="sources")
    async def watch_sources(self) -> None:
        """Every few seconds, the session's sources and the fleet's health, through the server.
        A failed read keeps what was shown (the chat's connection reports outages already)."""
        link = self.link
        assert link is not None
        while True:
            try:
                self.state.sources = await link.sources()
            except ApiError as exc:
                if exc.status in (403, 404):  # not the staff's to see, or gone: stop asking
                    return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            else:
                with contextlib.suppress(NoMatches):
                    self.redraw({"sources"})
            await asyncio.sleep(SOURCES_EVERY)

    async def _ask(self, what: str, call: Awaitable[Any]) -> Any:
        """Await a request; a refusal becomes a notification. None when it failed."""
        try:
            return await call
        except ApiError as exc:
            self.notify(
                plain_error(exc.code, exc.message, exc.retry_after, exc.status),
                title=f"{what} failed",
                severity="error",
            )
        except TimeoutError:
            self.notify("The server did not answer in time", title=what, severity="error")
        except (aiohttp.ClientError, OSError) as exc:
            self.notify(f"Cannot reach the server: {exc}", title=f"{what} failed", severity="error")
        return None

    def _linked(self) -> SessionLink | None:
        if self.link is None:
            self.notify("Not connected to a server", severity="warning")
        return self.link

    # --- chat ---------------------------------------------------------------------------------

    def action_filter(self) -> None:
        self.chat.set_platform(next_platform(self.chat.platform))

    def action_search(self) -> None:
        self.chat.open_search()

    def action_clear_search(self) -> None:
        self.chat.close_search()

    @work(group="actions")
    async def action_delete(self) -> None:
        line = self.chat.selected()
        link = self._linked()
        if line is None or link is None:
            return
        if line.deleted:
            self.notify("That message is already deleted", severity="warning")
            return
        if line.event is not None:
            self.notify("That is a platform event, not a message", severity="warning")
            return
        if await self._ask("Delete", link.delete_message(line.id)) is not None:
            self.notify(f"Deleted {line.name}'s message", timeout=3)

    @work(group="actions")
    async def action_mute(self) -> None:
        line = self.chat.selected()
        link = self._linked()
        if line is None or link is None:
            return
        key = mute_key(line)
        if not key or line.event is not None:
            self.notify(
                f"{line.name} on {line.platform} has no user id to mute; delete instead",
                severity="warning",
            )
            return
        muted = key not in self.state.muted
        platform = None if line.platform == "audifi" else line.platform
        await self._ask(
            "Mute" if muted else "Unmute", link.mute(key, muted, platform, line.username)
        )

    # --- polls --------------------------------------------------------------------------------

    def action_new_poll(self) -> None:
        if self.state.poll is not None and self.state.poll.active:
            self.notify("A poll is running: end it first (e)", severity="warning")
            return
        self.push_screen(PollForm(), self._create_poll)

    def _create_poll(self, payload: dict[str, Any] | None) -> None:
        if payload is not None:
            self._send_poll(payload)

    @work(group="actions")
    async def _send_poll(self, payload: dict[str, Any]) -> None:
        link = self._linked()
        if link is not None and await self._ask("Poll", link.create_poll(payload)) is not None:
            self.notify(f"Poll started: {payload['question']}", timeout=3)

    def action_end_poll(self) -> None:
        poll = self.state.poll
        if poll is None or not poll.active:
            self.notify("No poll is running", severity="warning")
            return
        question = f"End the poll '{poll.question}' now? Its results become final."

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._end_poll(poll.id)

        self.push_screen(Confirm(question, yes="End poll"), answered)

    @work(group="actions")
    async def _end_poll(self, poll_id: str) -> None:
        link = self._linked()
        if link is not None:
            await self._ask("End poll", link.end_poll(poll_id))

    # --- session controls ---------------------------------------------------------------------

    @work(group="actions")
    async def action_toggle_chat(self) -> None:
        link = self._linked()
        if link is not None:
            await self._ask("Chat", link.update_session(chatEnabled=not self.state.chat_enabled))

    @work(group="actions")
    async def action_toggle_reactions(self) -> None:
        link = self._linked()
        if link is not None:
            enabled = not self.state.reactions_enabled
            await self._ask("Reactions", link.update_session(reactionsEnabled=enabled))

    @work(group="actions")
    async def action_start(self) -> None:
        if self.state.status != "scheduled":
            self.notify(f"The session is {self.state.status}; only a scheduled one can start")
            return
        link = self._linked()
        if link is None:
            return
        session = await self._ask("Start", link.start_session())
        if session is not None:
            self.apply({"type": "session.update", "payload": session})
            self.notify("The session is live")

    def action_end_session(self) -> None:
        if self.state.status == "ended":
            self.notify("The session has already ended")
            return
        title = self.state.title or self.state.session_id
        question = f"End '{title}' for everyone? Viewers are disconnected; this cannot be undone."
        self.push_screen(Confirm(question, yes="End session"), self._end_confirmed)

    def _end_confirmed(self, confirmed: bool | None) -> None:
        if confirmed:
            self._end_session()

    @work(group="actions")
    async def _end_session(self) -> None:
        link = self._linked()
        if link is None:
            return
        session = await self._ask("End session", link.end_session())
        if session is not None:
            self.apply({"type": "session.update", "payload": session})


def _pseudo(state: str, **fields: Any) -> dict[str, Any]:
    return {"type": "connection.state", "payload": {"state": state, **fields}}
