"""Reactions as a live meter: reactions per second over the last seconds, and totals."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from vstudio_cli.console.model import ReactionMeter

__all__ = ["ReactionPanel", "reaction_text"]

SPAN_MS = 5000
ROWS = 4
BAR = 10


def _slot(emoji: str) -> str:
    """The emoji in three cells. The variation selector is dropped: terminals draw "❤️" two
    cells wide while it is measured as one, which would push the row past the panel."""
    shown = emoji.replace("\ufe0f", "")
    return shown + " " * max(1, 3 - cell_len(shown))


def reaction_text(meter: ReactionMeter, now_ms: int) -> Text:
    """The busiest emojis first: a bar scaled to the fastest, the rate, the total."""
    if not meter.totals:
        return Text("No reactions yet.", style="dim")
    rates = meter.rate(now_ms, SPAN_MS)
    ranked = sorted(meter.totals, key=lambda e: (rates.get(e, 0.0), meter.totals[e]), reverse=True)
    fastest = max(rates.values(), default=0.0)
    text = Text()
    for emoji in ranked[:ROWS]:
        rate = rates.get(emoji, 0.0)
        filled = round(rate / fastest * BAR) if fastest else 0
        text.append(_slot(emoji))
        text.append("▮" * filled, style="bold magenta")
        text.append("·" * (BAR - filled), style="grey35")
        text.append(f" {rate:>4.1f}/s {meter.totals[emoji]:>5}\n")
    text.append(f"total {sum(meter.totals.values())}", style="dim")
    return text


class ReactionPanel(Static):
    DEFAULT_CSS = """
    ReactionPanel { height: auto; border: round $accent; padding: 0 1; }
    """

    def show(self, meter: ReactionMeter, now_ms: int) -> None:
        self.border_title = "Reactions"
        self.update(reaction_text(meter, now_ms))
