"""The top line: session status, viewers, chat and reaction switches, the connection."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from vstudio_cli.console.model import ConsoleState, Link

__all__ = ["StatusBar", "status_text"]

SESSION_STYLE = {"live": "bold #ffffff on #c0392b", "scheduled": "bold black on #f1c40f"}
LINK_STYLE = {
    Link.LIVE: ("●", "green"),
    Link.RESUMED: ("●", "green"),
    Link.CONNECTING: ("◌", "yellow"),
    Link.RECONNECTING: ("◌", "yellow"),
    Link.CLOSED: ("✕", "red"),
    Link.OFFLINE: ("○", "grey50"),
}


def _switch(name: str, on: bool) -> Text:
    return Text(f"{name} {'on' if on else 'off'}", style="green" if on else "bold red")


def status_text(state: ConsoleState) -> Text:
    """One line: ``LIVE  title  👥 12  chat on  reactions on  ● live (producer)``."""
    text = Text(no_wrap=True, overflow="ellipsis")
    status = state.status.upper() if state.status != "unknown" else "—"
    text.append(f" {status} ", style=SESSION_STYLE.get(state.status, "bold on grey30"))
    text.append(" ")
    text.append(f"👥 {state.viewer_count}", style="bold")
    if state.holder_count is not None:
        text.append(f"  🔑 {state.holder_count} holders", style="bold yellow")
    text.append("  ")
    text.append_text(_switch("chat", state.chat_enabled))
    text.append("  ")
    text.append_text(_switch("reactions", state.reactions_enabled))
    text.append("  ")
    mark, colour = LINK_STYLE.get(state.link, ("?", "white"))
    text.append(f"{mark} {state.link.value}", style=colour)
    if state.link_detail:
        text.append(f" ({state.link_detail})", style="dim")
    if state.role:
        text.append(f"  as {state.role}", style="dim")
    if state.title:
        text.append(f"  {state.title}", style="italic")
    return text


class StatusBar(Static):
    """The console's first line."""

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; }
    """

    def show(self, state: ConsoleState) -> None:
        self.update(status_text(state))
