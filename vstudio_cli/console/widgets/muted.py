"""Who is muted in the session, by name and platform (fans and platform users alike)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

__all__ = ["MutedPanel", "muted_text"]


def muted_text(muted: set[str], names: dict[str, tuple[str, str]]) -> Text:
    """``troll (twitch) · fan-9``: each muted id by the name the server or console knows."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not muted:
        text.append("Nobody is muted.", style="dim")
        return text
    shown = []
    for user_id in sorted(muted):
        platform, name = names.get(user_id, ("audifi", user_id))
        shown.append(f"{name} ({platform})" if platform != "audifi" else name)
    text.append(" · ".join(shown), style="bold red")
    return text


class MutedPanel(Static):
    DEFAULT_CSS = """
    MutedPanel { height: auto; max-height: 4; border: round $accent; padding: 0 1; }
    """

    def show(self, muted: set[str], names: dict[str, tuple[str, str]]) -> None:
        self.border_title = "Muted"
        self.update(muted_text(muted, names))
