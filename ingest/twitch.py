"""Twitch chat over IRC-over-WebSocket: the mapping of IRC lines to items, and the adapter."""

from __future__ import annotations

__all__ = ["twitch_emote_url"]

EMOTE_CDN = "https://static-cdn.jtvnw.net/emoticons/v2/{id}/default/dark/1.0"


def twitch_emote_url(emote_id: str) -> str:
    """The image of a Twitch emote by its id (dark theme, 1x)."""
    return EMOTE_CDN.format(id=emote_id)
