"""Which chat lines the producer sees: the platform filter and the search, as pure functions."""

from __future__ import annotations

from collections.abc import Iterable

from vstudio_cli.console.model import PLATFORMS, ChatLine

__all__ = ["matches", "next_platform", "visible_lines"]


def next_platform(current: str | None) -> str | None:
    """The filter after ``current``: all -> twitch -> ... -> audifi -> all."""
    cycle: list[str | None] = [None, *PLATFORMS]
    return cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else None


def matches(line: ChatLine, platform: str | None, query: str) -> bool:
    """True if ``line`` is on ``platform`` (None: any) and contains ``query`` in text or name."""
    if platform is not None and line.platform != platform:
        return False
    needle = query.strip().casefold()
    if not needle:
        return True
    fields = (line.text, line.username, line.display_name)
    return any(needle in (field or "").casefold() for field in fields)


def visible_lines(lines: Iterable[ChatLine], platform: str | None, query: str) -> list[ChatLine]:
    return [line for line in lines if matches(line, platform, query)]
