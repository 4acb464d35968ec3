"""The session's chat sources and how the worker fleet reads them (issue 15).

One line per source: ``twitch:band  2/2 connected  5.1/s``; a source no worker reads is red, one
read by fewer workers than its redundancy yellow. The panel is hidden while the session
declares no source, so a console without the fleet looks as it always did.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

__all__ = ["SourcesPanel", "sources_text"]


def sources_text(rows: list[dict[str, Any]]) -> Text:
    """Each source (the REST route's rows with ``?health=1``) with owners/wanted and state."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for index, row in enumerate(rows):
        owners = len(row.get("owners") or [])
        wanted = row.get("redundancy") or 1
        state = str(row.get("state") or "?")
        style = "bold red" if owners == 0 and state != "idle" else ""
        if not style and owners < wanted and state != "idle":
            style = "yellow"
        if index:
            text.append("\n")
        text.append(str(row.get("id")), style=style or "bold")
        text.append(f" {owners}/{wanted} {state}", style=style or "green")
        rate = row.get("msgPerS") or 0.0
        if rate:
            text.append(f" {rate:.1f}/s", style="dim")
    return text


class SourcesPanel(Static):
    DEFAULT_CSS = """
    SourcesPanel {
        display: none; height: auto; max-height: 6; border: round $accent; padding: 0 1;
    }
    """

    def show(self, rows: list[dict[str, Any]]) -> None:
        self.display = bool(rows)
        unclaimed = sum(1 for row in rows if not row.get("owners") and row.get("state") != "idle")
        self.border_title = "Sources" + (f" ({unclaimed} unread)" if unclaimed else "")
        self.update(sources_text(rows))
