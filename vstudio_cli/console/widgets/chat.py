"""The aggregated chat: one row per message with its platform badge, filtered and searchable.

Rows are keyed by message id, so the producer's cursor names the message to delete or the
user to mute. Deleted messages stay visible, struck through, so the producer sees the effect.
The chat follows new messages while the cursor is on the last row; a cursor moved up to pick a
message pauses that, and the panel's border says so, counts what arrived below and names the
key that follows again (End).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Input
from textual.widgets.data_table import ColumnKey, RowKey

from vstudio_cli.console.filters import matches, visible_lines
from vstudio_cli.console.model import ChatLine, ConsoleState, mute_key
from vstudio_cli.console.palette import badge, name_text, platform_label

__all__ = ["ChatPanel", "message_text"]

NAME_WIDTH = 12
VIEW_ROWS = 200
"""Rows kept in the table; the state keeps more, which a filter or search brings back."""
SLACK = 100
"""Rows allowed past VIEW_ROWS before trimming: DataTable removes rows one by one slowly."""


def message_text(line: ChatLine) -> Text:
    """The text with each emote shown as its name (``:catvibe:``), not its markup."""
    if line.event is not None:
        return Text(f"✦ {line.text}", style="italic #ffd75f")
    text = Text()
    cursor = 0
    for start, end, name in sorted(line.emotes):
        if start < cursor or end >= len(line.text) or not name:
            continue
        text.append(line.text[cursor:start])
        text.append(f":{name}:", style="bold magenta")
        cursor = end + 1
    text.append(line.text[cursor:])
    if line.deleted:
        text.stylize("strike dim")
        text.append(" deleted", style="italic red")
    return text


class ChatTable(DataTable[Text]):
    """The chat's table, where End goes to the newest message (and so follows again)."""

    def action_scroll_end(self) -> None:
        self.action_scroll_bottom()


class ChatPanel(Vertical):
    """A DataTable of chat plus a search box that opens with ``/``."""

    DEFAULT_CSS = """
    ChatPanel { border: round $primary; height: 1fr; }
    ChatPanel DataTable { height: 1fr; scrollbar-size-vertical: 1; }
    ChatPanel Input { display: none; height: 1; border: none; padding: 0 1; }
    ChatPanel.searching Input { display: block; }
    """

    def __init__(self, state: ConsoleState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.platform: str | None = None
        self.query_text = ""
        self.unseen = 0
        """Messages that arrived below the cursor while following was paused."""

    def compose(self) -> ComposeResult:
        yield ChatTable(cursor_type="row", show_header=False, cell_padding=0)
        yield Input(placeholder="search chat (Enter keeps it, Esc clears)", id="search")

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one(DataTable)

    def on_mount(self) -> None:
        self.table.add_column("badge", width=4, key="badge")
        self.table.add_column("name", width=NAME_WIDTH + 1, key="name")
        self.table.add_column("text", width=self._text_width(), key="text")
        self._retitle()

    def _text_width(self) -> int:
        inner = self.size.width - 2 if self.size.width else 40
        return max(10, inner - 4 - NAME_WIDTH - 1 - 1)

    def on_resize(self) -> None:
        width = self._text_width()
        column = self.table.columns.get(ColumnKey("text"))
        if column is not None and column.width != width:
            self.rebuild()

    @property
    def following(self) -> bool:
        """New messages move the cursor along: it is on the last row (or there is none)."""
        table = self.table
        return table.row_count == 0 or table.cursor_row >= table.row_count - 1

    def _retitle(self) -> None:
        self.border_title = f"Chat · {platform_label(self.platform)}"
        parts = [f"search: {self.query_text}"] if self.query_text else []
        if not self.following:
            waiting = f"{self.unseen} new below, " if self.unseen else ""
            parts.append(f"paused on a message: {waiting}End follows again")
        self.border_subtitle = " · ".join(parts) or None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.following:
            self.unseen = 0
        self._retitle()

    def _name_cell(self, line: ChatLine) -> Text:
        key = mute_key(line)
        name = name_text(line, muted=key is not None and key in self.state.muted)
        name.truncate(NAME_WIDTH, overflow="ellipsis")
        return name

    def _add_row(self, line: ChatLine) -> None:
        text = message_text(line)
        cells = (badge(line.platform), self._name_cell(line), text)
        self.table.add_row(*cells, key=line.id, height=self._height(text))

    def _height(self, text: Text) -> int:
        """Lines the message wraps to. Measured here once: DataTable's automatic row height
        re-measures rows and could not keep up with 100 messages a second."""
        return max(1, len(text.wrap(self.app.console, self._text_width())))

    def restyle(self, lines: Iterable[ChatLine]) -> None:
        """Redraw the rows of lines that changed (deleted, author muted or unmuted)."""
        table = self.table
        for line in lines:
            row = table.rows.get(RowKey(line.id))
            if row is None:
                continue
            text = message_text(line)
            if self._height(text) != row.height:  # rare: " deleted" took one more line
                self.rebuild()
                return
            table.update_cell(line.id, "name", self._name_cell(line))
            table.update_cell(line.id, "text", text)

    def append(self, lines: Iterable[ChatLine]) -> None:
        """Add new messages at the bottom, following them if the cursor was on the last row."""
        table = self.table
        following = self.following
        added = 0
        for line in lines:
            if matches(line, self.platform, self.query_text):
                self._add_row(line)
                added += 1
        if added and not following:
            self.unseen += added
            self._retitle()
        if table.row_count > VIEW_ROWS + SLACK:
            self.rebuild()
        elif added and following:
            table.move_cursor(row=table.row_count - 1)

    def rebuild(self) -> None:
        """Redraw every visible row (after a filter, search, deletion, mute or resize)."""
        table = self.table
        selected = self.selected()
        table.clear()
        column = table.columns.get(ColumnKey("text"))
        if column is not None:
            column.width = self._text_width()
        for line in visible_lines(self.state.chat, self.platform, self.query_text)[-VIEW_ROWS:]:
            self._add_row(line)
        if selected is not None and selected.id in table.rows:
            table.move_cursor(row=table.get_row_index(selected.id))
        elif table.row_count:
            table.move_cursor(row=table.row_count - 1)
        self._retitle()

    def selected(self) -> ChatLine | None:
        """The message under the cursor."""
        table = self.table
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self.state.find_message(str(row_key.value))

    def set_platform(self, platform: str | None) -> None:
        self.platform = platform
        self.rebuild()

    def open_search(self) -> None:
        self.add_class("searching")
        self.query_one(Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value
        self.rebuild()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value:
            self.remove_class("searching")
        self.table.focus()

    def close_search(self) -> None:
        """Clear the search and give the keys back to the chat."""
        search = self.query_one(Input)
        search.value = ""
        self.query_text = ""
        self.remove_class("searching")
        self.rebuild()
        self.table.focus()
