"""Money: what the session received, per platform and currency, and the latest entries.

One panel for every kind of money the ledger holds: fans' tips, Twitch bits, YouTube Super
Chats and Stickers, TikTok gifts (in diamonds). Bits and diamonds are shown as themselves; the
USD estimate, when the server has a rate for every currency, is ``session.state``'s and is not
computed here.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import Static

from vstudio_cli.console.model import TipLine

__all__ = ["TipsPanel", "money_text", "tips_text"]

WHOLE_UNITS = frozenset({"BITS", "DIAMONDS", "JPY", "KRW"})


def _money(amount: float, currency: str) -> str:
    if currency in WHOLE_UNITS:
        return f"{amount:,.0f} {currency}"
    return f"{amount:,.2f} {currency}"


def money_text(tips: Iterable[TipLine], totals: dict[str, dict[str, float]]) -> Text:
    """One totals line per platform, then one line per entry: where, who, how much, message."""
    text = Text(no_wrap=True, overflow="ellipsis")
    shown = {p: amounts for p, amounts in sorted(totals.items()) if amounts}
    if not shown:
        text.append("No money yet.", style="dim")
        return text
    for index, (platform, amounts) in enumerate(shown.items()):
        if index:
            text.append("\n")
        text.append(f"{platform:<8}", style="bold")
        text.append(
            " · ".join(_money(amount, currency) for currency, amount in sorted(amounts.items())),
            style="bold green",
        )
    for tip in tips:
        text.append("\n")
        text.append(f"{tip.platform[:2]} ", style="dim")
        text.append(tip.username, style="bold")
        text.append(f" {_money(tip.amount, tip.currency)}", style="green")
        if tip.message:
            text.append(f" {tip.message}", style="italic")
    return text


def tips_text(tips: Iterable[TipLine], totals: dict[str, float]) -> Text:
    """Fans' tips alone (the panel before platform money joined it)."""
    return money_text(tips, {"audifi": totals} if totals else {})


class TipsPanel(Static):
    DEFAULT_CSS = """
    TipsPanel { height: 1fr; min-height: 3; border: round $accent; padding: 0 1; }
    """

    def show(self, tips: Iterable[TipLine], totals: dict[str, dict[str, float]]) -> None:
        self.border_title = "Money"
        self.update(money_text(tips, totals))
