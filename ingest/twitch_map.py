"""Twitch IRC messages mapped to what the bus carries: pure functions, no I/O.

``PRIVMSG`` becomes a :class:`NormalizedChatMessage` with the id ``twitch:<msg-id>``.
A ``CLEARMSG`` becomes ``ChatDelete(message_id="twitch:<id>")``; a ``CLEARCHAT`` naming a user
(ban or timeout) becomes ``ChatDelete(username=..., platform=twitch)``; a ``CLEARCHAT`` without
a user (``/clear``) becomes ``ChatDelete(username="*", platform=twitch)``: every message of the
platform. ``USERNOTICE`` subscriptions, gifts and raids become platform events. The connection
that reads the lines is ``ingest/twitch.py``.
"""

from __future__ import annotations

from typing import Any

from broker.models import ChatDelete, Emote, NormalizedChatMessage, Platform, PlatformEvent, now_ms
from ingest.base import EventKind, IngestItem
from ingest.batching import CLEAR_ALL_USERS
from ingest.irc import IrcMessage

__all__ = [
    "EMOTE_CDN",
    "parse_badges",
    "parse_emotes",
    "to_item",
    "twitch_emote_url",
]

EMOTE_CDN = "https://static-cdn.jtvnw.net/emoticons/v2/{id}/default/dark/1.0"
ACTION_START = "\x01ACTION "
SUB_PLANS = {"Prime": "Prime", "1000": "Tier 1", "2000": "Tier 2", "3000": "Tier 3"}


def twitch_emote_url(emote_id: str) -> str:
    """The image of a Twitch emote by its id (dark theme, 1x)."""
    return EMOTE_CDN.format(id=emote_id)


def parse_badges(raw: str) -> list[str]:
    """``moderator/1,subscriber/12`` -> ``["moderator", "subscriber"]`` (names, in order)."""
    return [part.split("/", 1)[0] for part in raw.split(",") if part and part.split("/", 1)[0]]


def parse_emotes(raw: str, text: str) -> list[Emote]:
    """``25:0-4,12-16/1902:6-10`` -> emotes with their names cut from ``text``.

    Positions count Unicode code points, as Python strings do. A malformed or out-of-range
    entry is skipped rather than trusted.
    """
    return [Emote.model_validate(fields) for fields in _emote_fields(raw, text)]


def _emote_fields(raw: str, text: str) -> list[dict[str, Any]]:
    """The emotes as plain fields; the message model validates them with the message."""
    if not raw:
        return []
    emotes: list[dict[str, Any]] = []
    for entry in raw.split("/"):
        emote_id, _, ranges = entry.partition(":")
        if not emote_id or not ranges:
            continue
        positions: list[tuple[int, int]] = []
        for span in ranges.split(","):
            start_text, _, end_text = span.partition("-")
            if not (start_text.isdigit() and end_text.isdigit()):
                continue
            start, end = int(start_text), int(end_text)
            if start <= end < len(text):
                positions.append((start, end))
        if not positions:
            continue
        first_start, first_end = positions[0]
        name = text[first_start : first_end + 1]
        if name.strip():
            emotes.append(
                {"name": name[:100], "url": EMOTE_CDN.format(id=emote_id), "positions": positions}
            )
    return emotes


def _flag(tags: dict[str, str], name: str) -> bool:
    return tags.get(name) == "1"


def _timestamp(tags: dict[str, str]) -> int:
    sent = tags.get("tmi-sent-ts", "")
    return int(sent) if sent.isdigit() else now_ms()


def _chat_message(message: IrcMessage) -> NormalizedChatMessage:
    tags = message.tags
    msg_id = tags.get("id")
    if not msg_id:
        raise ValueError("PRIVMSG without an id tag (was twitch.tv/tags acknowledged?)")
    text = message.trailing
    if text.startswith(ACTION_START) and text.endswith("\x01"):
        text = text[len(ACTION_START) : -1]  # "/me waves" arrives as a CTCP ACTION
    badges = parse_badges(tags.get("badges", ""))
    login = (message.nick or tags.get("login") or "").lower()
    emotes = _emote_fields(tags.get("emotes", ""), text) or None
    return NormalizedChatMessage(
        id=f"twitch:{msg_id}",
        platform=Platform.TWITCH,
        username=login,
        display_name=tags.get("display-name") or None,
        text=text,
        badges=badges or None,
        is_subscriber=_flag(tags, "subscriber") or "founder" in badges or "subscriber" in badges,
        is_moderator=_flag(tags, "mod") or "moderator" in badges or "broadcaster" in badges,
        timestamp=_timestamp(tags),
        emotes=emotes,  # type: ignore[arg-type]  # dicts, validated into Emote with the message
        user_id=tags.get("user-id") or None,
    )


def _user_notice(message: IrcMessage) -> PlatformEvent | None:
    tags = message.tags
    kind_of: dict[str, EventKind] = {
        "sub": "subscribe",
        "resub": "subscribe",
        "subgift": "gift",
        "submysterygift": "gift",
        "raid": "raid",
    }
    kind = kind_of.get(tags.get("msg-id", ""))
    if kind is None or not tags.get("id"):
        return None
    count_text = (
        tags.get("msg-param-viewerCount")
        or tags.get("msg-param-mass-gift-count")
        or tags.get("msg-param-cumulative-months")
        or ""
    )
    detail = SUB_PLANS.get(tags.get("msg-param-sub-plan", "")) or None
    recipient = tags.get("msg-param-recipient-display-name")
    if recipient:
        detail = f"{detail or 'sub'} to {recipient}"
    return PlatformEvent(
        id=f"twitch:{tags['id']}",
        platform=Platform.TWITCH,
        kind=kind,
        username=(tags.get("login") or message.nick or "unknown").lower(),
        display_name=tags.get("display-name") or None,
        count=int(count_text) if count_text.isdigit() else None,
        detail=detail,
        timestamp=_timestamp(tags),
    )


def to_item(message: IrcMessage) -> IngestItem | None:
    """The item a Twitch IRC message stands for, or ``None`` when it carries no chat."""
    if message.command == "PRIVMSG":
        return _chat_message(message)
    if message.command == "CLEARMSG":
        target = message.tags.get("target-msg-id")
        if not target:
            raise ValueError("CLEARMSG without a target-msg-id tag")
        return ChatDelete(message_id=f"twitch:{target}", reason="deleted by a moderator")
    if message.command == "CLEARCHAT":
        if len(message.params) >= 2 and message.trailing:
            duration = message.tags.get("ban-duration")
            reason = f"timed out for {duration} s" if duration else "banned"
            return ChatDelete(
                username=message.trailing.lower(), platform=Platform.TWITCH, reason=reason
            )
        return ChatDelete(username=CLEAR_ALL_USERS, platform=Platform.TWITCH, reason="chat cleared")
    if message.command == "USERNOTICE":
        return _user_notice(message)
    return None
