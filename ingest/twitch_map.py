"""Twitch IRC messages mapped to what the bus carries: pure functions, no I/O.

``PRIVMSG`` becomes a :class:`NormalizedChatMessage` with the id ``twitch:<msg-id>``.
A ``CLEARMSG`` becomes ``ChatDelete(message_id="twitch:<id>")``; a ``CLEARCHAT`` naming a user
(ban or timeout) becomes ``ChatDelete(username=..., platform=twitch)``; a ``CLEARCHAT`` without
a user (``/clear``) becomes ``ChatDelete(username="*", platform=twitch)``: every message of the
platform. ``USERNOTICE`` subs, gifts, raids, announcements and milestones become platform
events, and a ``PRIVMSG`` with ``bits`` is both the chat line and a ``cheer`` (money, in the
pseudo-currency ``BITS``). The connection that reads the lines is ``ingest/twitch.py``; what
each ``msg-id`` becomes is listed in :data:`NOTICE_KINDS` and :data:`IGNORED_NOTICES`.

Shared chat (a message sent in another channel of a shared-chat session) is identified by its
``source-id``: every channel of the session sees the same ``source-id``, so the message id is
``twitch:<source-id>`` and two channels (or two workers) publish it once; its ``sourceChannel``
is the room it was sent in and its badges are the ones it has there (``source-badges``).
"""

from __future__ import annotations

from typing import Any

from broker.models import (
    ChatDelete,
    Emote,
    EventKind,
    NormalizedChatMessage,
    Platform,
    PlatformEvent,
    ReplyParent,
    now_ms,
)
from ingest.base import IngestItem
from ingest.batching import CLEAR_ALL_USERS
from ingest.irc import IrcMessage

__all__ = [
    "EMOTE_CDN",
    "cheer_of",
    "parse_badges",
    "parse_emotes",
    "reward_of",
    "to_item",
    "to_items",
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


NOTICE_KINDS: dict[str, EventKind] = {
    "sub": "sub",
    "resub": "resub",
    "subgift": "giftsub",
    "anonsubgift": "giftsub",
    "submysterygift": "giftbomb",
    "anonsubmysterygift": "giftbomb",
    "giftpaidupgrade": "subupgrade",
    "anongiftpaidupgrade": "subupgrade",
    "primepaidupgrade": "subupgrade",
    "communitypayforward": "payforward",
    "standardpayforward": "payforward",
    "raid": "raid",
    "announcement": "announcement",
    "viewermilestone": "milestone",
    "bitsbadgetier": "milestone",
}
"""``USERNOTICE`` ``msg-id`` -> event kind."""

IGNORED_NOTICES: dict[str, str] = {
    "unraid": "a raid that was called off never arrives: nothing happened in this channel",
    "ritual": "new-chatter rituals were retired by Twitch; first-msg=1 on PRIVMSG says the same",
    "rewardgift": "a channel-wide reward drop triggered by another event that is already mapped",
    "charitydonation": "money given to a charity, not to the artist: not in the artist's ledger",
    "onetapgiftredeemed": "one-tap gifts arrive as bits and are counted by their cheer",
}
"""``msg-id`` values deliberately mapped to nothing, and why."""


def _flag(tags: dict[str, str], name: str) -> bool:
    return tags.get(name) == "1"


def _timestamp(tags: dict[str, str]) -> int:
    sent = tags.get("tmi-sent-ts", "")
    return int(sent) if sent.isdigit() else now_ms()


def _number(tags: dict[str, str], name: str) -> int | None:
    text = tags.get(name, "")
    return int(text) if text.isdigit() else None


def _shared_origin(tags: dict[str, str]) -> str | None:
    """The room a shared-chat message was sent in, when that is not this channel."""
    source = tags.get("source-room-id")
    return source if source and source != tags.get("room-id") else None


def _message_key(tags: dict[str, str]) -> str:
    """The id two channels of one shared-chat session agree on: ``source-id``, else ``id``."""
    key = tags.get("source-id") or tags.get("id")
    if not key:
        raise ValueError("message without an id tag (was twitch.tv/tags acknowledged?)")
    return key


def _reply_parent(tags: dict[str, str]) -> ReplyParent | None:
    parent = tags.get("reply-parent-msg-id")
    if not parent:
        return None
    return ReplyParent(
        id=f"twitch:{parent}",
        username=tags.get("reply-parent-user-login") or None,
        display_name=tags.get("reply-parent-display-name") or None,
        text=tags.get("reply-parent-msg-body") or None,
    )


def _chat_message(message: IrcMessage) -> NormalizedChatMessage:
    tags = message.tags
    msg_id = _message_key(tags)
    text = message.trailing
    if text.startswith(ACTION_START) and text.endswith("\x01"):
        text = text[len(ACTION_START) : -1]  # "/me waves" arrives as a CTCP ACTION
    origin = _shared_origin(tags)
    # in shared chat the sender's standing is the one in the channel it was sent in
    badges = parse_badges(tags.get("source-badges" if origin else "badges", ""))
    login = (message.nick or tags.get("login") or "").lower()
    emotes = _emote_fields(tags.get("emotes", ""), text) or None
    highlighted = tags.get("msg-id") == "highlighted-message"
    return NormalizedChatMessage(
        id=f"twitch:{msg_id}",
        platform=Platform.TWITCH,
        username=login,
        display_name=tags.get("display-name") or None,
        text=text,
        badges=badges or None,
        is_subscriber=("founder" in badges or "subscriber" in badges)
        or (not origin and _flag(tags, "subscriber")),
        is_moderator=("moderator" in badges or "broadcaster" in badges)
        or (not origin and _flag(tags, "mod")),
        timestamp=_timestamp(tags),
        emotes=emotes,  # type: ignore[arg-type]  # dicts, validated into Emote with the message
        user_id=tags.get("user-id") or None,
        reply_parent=_reply_parent(tags),
        first_message=True if _flag(tags, "first-msg") else None,
        highlighted=True if highlighted else None,
        source_channel=origin,
    )


def cheer_of(chat: NormalizedChatMessage, bits: int) -> PlatformEvent:
    """The money part of a chat message with ``bits``: a ``cheer`` of that many ``BITS``, with
    the id IRC and EventSub both give it (so two transports count one cheer once)."""
    return PlatformEvent(
        id=f"{chat.id}:cheer",
        platform=Platform.TWITCH,
        kind="cheer",
        username=chat.username,
        display_name=chat.display_name,
        user_id=chat.user_id,
        count=bits,
        amount_minor=bits,
        currency="BITS",
        message=chat.text or None,
        timestamp=chat.timestamp,
        source_channel=chat.source_channel,
    )


def reward_of(chat: NormalizedChatMessage, reward: str) -> PlatformEvent:
    """A channel-points reward (its id) redeemed with ``chat``."""
    return PlatformEvent(
        id=f"{chat.id}:reward",
        platform=Platform.TWITCH,
        kind="reward",
        username=chat.username,
        display_name=chat.display_name,
        user_id=chat.user_id,
        detail=reward,
        message=chat.text or None,
        timestamp=chat.timestamp,
    )


def _cheer(message: IrcMessage, chat: NormalizedChatMessage) -> PlatformEvent | None:
    """A ``PRIVMSG`` with ``bits``: its cheer."""
    bits = _number(message.tags, "bits")
    return cheer_of(chat, bits) if bits else None


def _reward(message: IrcMessage, chat: NormalizedChatMessage) -> PlatformEvent | None:
    """A ``PRIVMSG`` with ``custom-reward-id``: the reward redeemed."""
    reward = message.tags.get("custom-reward-id")
    return reward_of(chat, reward) if reward else None


def _notice_kind(tags: dict[str, str]) -> tuple[str, str | None]:
    """(msg-id, origin room): a ``sharedchatnotice`` stands for its ``source-msg-id``."""
    msg_id = tags.get("msg-id", "")
    if msg_id == "sharedchatnotice":
        return tags.get("source-msg-id", ""), _shared_origin(tags)
    return msg_id, _shared_origin(tags)


def _user_notice(message: IrcMessage) -> PlatformEvent | None:
    tags = message.tags
    msg_id, origin = _notice_kind(tags)
    kind = NOTICE_KINDS.get(msg_id)
    if kind is None or not (tags.get("source-id") or tags.get("id")):
        return None  # an IGNORED_NOTICES id, or one Twitch added after this was written
    plan = tags.get("msg-param-sub-plan", "")
    tier = SUB_PLANS.get(plan) or None
    count: int | None = None
    group: str | None = None
    detail = tier
    if kind in ("sub", "resub"):
        count = 1
    elif kind == "giftsub":
        group = tags.get("msg-param-community-gift-id") or None
        # a line of a gift bomb: its submysterygift already counted it
        count = 0 if group else 1
    elif kind == "giftbomb":
        count = _number(tags, "msg-param-mass-gift-count")
        group = tags.get("msg-param-community-gift-id") or tags.get("msg-param-origin-id") or None
    elif kind == "raid":
        count = _number(tags, "msg-param-viewerCount")
    elif msg_id == "bitsbadgetier":
        count, detail = _number(tags, "msg-param-threshold"), "bits badge"
    elif kind == "milestone":  # viewermilestone: a watch streak of msg-param-value streams
        count, detail = _number(tags, "msg-param-value"), tags.get("msg-param-category") or None
    elif kind == "announcement":
        detail = tags.get("msg-param-color") or None
    recipient = tags.get("msg-param-recipient-user-name") or None
    return PlatformEvent(
        id=f"twitch:{_message_key(tags)}",
        platform=Platform.TWITCH,
        kind=kind,
        username=(tags.get("login") or message.nick or "unknown").lower(),
        display_name=tags.get("display-name") or None,
        user_id=tags.get("user-id") or None,
        count=count,
        detail=detail,
        tier=tier,
        months=_number(tags, "msg-param-cumulative-months"),
        recipient=recipient.lower() if recipient else None,
        recipient_display_name=tags.get("msg-param-recipient-display-name") or None,
        group_id=group,
        message=message.trailing if len(message.params) >= 2 and message.trailing else None,
        timestamp=_timestamp(tags),
        source_channel=origin,
    )


def to_items(message: IrcMessage) -> list[IngestItem]:
    """What a Twitch IRC message stands for: usually one item, a cheer two, nothing for the
    rest (joins, room states, ignored notices)."""
    if message.command == "PRIVMSG":
        chat = _chat_message(message)
        extra = [event for event in (_cheer(message, chat), _reward(message, chat)) if event]
        return [chat, *extra]
    item = to_item(message)
    return [item] if item is not None else []


def to_item(message: IrcMessage) -> IngestItem | None:
    """The one item a Twitch IRC message stands for (a ``PRIVMSG``'s chat line; its cheer or
    reward comes from :func:`to_items`), or ``None``."""
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
