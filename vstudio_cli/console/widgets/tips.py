"""Tips: totals per currency and the latest tips, newest first."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import Static

from vstudio_cli.console.model import TipLine

__all__ = ["TipsPanel", "tips_text"]


def _money(amount: float, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def tips_text(tips: Iterable[TipLine], totals: dict[str, float]) -> Text:
    """A totals line, then one line per tip: who, how much, their message."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not totals:
        text.append("No tips yet.", style="dim")
        return text
    text.append(
        " · ".join(_money(amount, currency) for currency, amount in sorted(totals.items())),
        style="bold green",
    )
    for tip in tips:
        text.append("\n")
        text.append(tip.username, style="bold")
        text.append(f" {_money(tip.amount, tip.currency)}", style="green")
        if tip.message:
            text.append(f" {tip.message}", style="italic")
    return text


class TipsPanel(Static):
    DEFAULT_CSS = """
    TipsPanel { height: 1fr; min-height: 3; border: round $accent; padding: 0 1; }
    """

    def show(self, tips: Iterable[TipLine], totals: dict[str, float]) -> None:
        self.border_title = "Tips"
        self.update(tips_text(tips, totals))
