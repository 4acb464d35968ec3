"""The active poll with a result bar per option."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from vstudio_cli.console.model import PollView

__all__ = ["PollPanel", "poll_text"]

BAR = 8


def _bar(share: float, width: int = BAR) -> str:
    filled = round(share * width)
    return "█" * filled + "░" * (width - filled)


def _remaining(poll: PollView, now_ms: int) -> str:
    if not poll.active:
        return "ended"
    if poll.ends_at is None:
        return "open until ended"
    seconds = max(0, (poll.ends_at - now_ms) // 1000)
    return f"{seconds // 60}:{seconds % 60:02d} left"


def poll_text(poll: PollView | None, now_ms: int) -> Text:
    """Question, one bar per option (share, count, option), votes and time left."""
    if poll is None:
        return Text("No poll running. Press p to start one.", style="dim")
    text = Text()
    if poll.gated:
        text.append("🔒 holders only ", style="bold yellow")
    text.append(poll.question + "\n", style="bold")
    total = sum(poll.results)
    leader = max(poll.results) if poll.results and total else -1
    for option, count in zip(poll.options, poll.results, strict=False):
        share = count / total if total else 0.0
        style = "bold green" if count == leader else "cyan"
        text.append(_bar(share), style=style)
        text.append(f" {share:>4.0%} {count:>3} ", style="bold" if count == leader else "")
        text.append(option + "\n")
    votes = "vote" if poll.total == 1 else "votes"
    multiple = ", multiple choice" if poll.allow_multiple else ""
    text.append(f"{poll.total} {votes}{multiple} · {_remaining(poll, now_ms)}", style="dim")
    return text


class PollPanel(Static):
    """Shows :func:`poll_text`; the app refreshes it on poll frames and once a second."""

    DEFAULT_CSS = """
    PollPanel { height: auto; max-height: 14; border: round $accent; padding: 0 1; }
    """

    def show(self, poll: PollView | None, now_ms: int) -> None:
        self.border_title = "Poll" if poll is None or poll.active else "Poll (ended)"
        self.update(poll_text(poll, now_ms))
