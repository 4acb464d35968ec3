"""Discord messages to our models, without sockets.

:mod:`ingest.discord` reads a ``discord.Message`` (built by discord.py from the gateway's
``MESSAGE_CREATE``) into a :class:`DiscordChat`, a plain record of what we use; everything from
there on (badges, moderator flag, custom emotes, deletions) is here and tested on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from broker.models import (
    ChatDelete,
    Emote,
    EventKind,
    NormalizedChatMessage,
    Platform,
    PlatformEvent,
    ReplyParent,
)

__all__ = [
    "CHAT_TYPES",
    "IGNORED_SYSTEM_TYPES",
    "SYSTEM_EVENTS",
    "DiscordAuthor",
    "DiscordChat",
    "extract_custom_emotes",
    "map_deletions",
    "map_item",
    "map_message",
    "resolve_mentions",
]

PLATFORM = Platform.DISCORD
MAX_TEXT = 2000
MAX_BADGES = 10
CUSTOM_EMOTE = re.compile(r"<(a?):([A-Za-z0-9_~]{1,32}):(\d{15,21})>")
MENTION = re.compile(r"<(@!?|@&|#)(\d{15,21})>")

CHAT_TYPES = frozenset({"default", "reply", "chat_input_command", "context_menu_command"})
"""``discord.MessageType`` names that are a person's chat."""

SYSTEM_EVENTS: dict[str, tuple[EventKind, str]] = {
    "new_member": ("follow", "joined the server"),
    "premium_guild_subscription": ("sub", "boosted the server"),
    "premium_guild_tier_1": ("sub", "boosted the server to level 1"),
    "premium_guild_tier_2": ("sub", "boosted the server to level 2"),
    "premium_guild_tier_3": ("sub", "boosted the server to level 3"),
}
"""System messages that stand for something a fan did: the event kind and its words."""

IGNORED_SYSTEM_TYPES: dict[str, str] = {
    "pins_add": "a moderator pinned a message: housekeeping, not something to show fans",
    "thread_created": "the thread's own messages are read; its creation says nothing more",
    "thread_starter_message": "a copy of a message that was already read in the channel",
    "channel_name_change": "a channel setting",
    "channel_icon_change": "a channel setting",
    "channel_follow_add": "another server follows this channel: not a fan in this chat",
    "auto_moderation_action": "Discord's filter blocked a message: the message never showed",
    "call": "DM calls do not happen in a guild text channel",
}
"""System message types deliberately mapped to nothing, and why. Any other non-chat type
(Discord adds them now and then) is skipped too rather than shown as an empty line."""
EMOJI_CDN = "https://cdn.discordapp.com/emojis"


@dataclass(frozen=True)
class DiscordAuthor:
    """Who wrote a message, as far as the guild tells us.

    ``roles`` are role names, highest first, without ``@everyone``; ``can_moderate`` comes from
    the member's permissions in the guild (manage messages, moderate members or administrator).
    """

    id: int
    username: str
    display_name: str | None = None
    bot: bool = False
    roles: tuple[str, ...] = ()
    can_moderate: bool = False
    is_owner: bool = False
    is_booster: bool = False


@dataclass(frozen=True)
class DiscordChat:
    """One guild text message: its id, author, raw content and creation time."""

    id: int
    channel_id: int
    author: DiscordAuthor
    content: str
    created_at: int
    attachments: tuple[str, ...] = field(default_factory=tuple)
    kind: str = "default"
    """The ``discord.MessageType`` name: ``default``, ``reply``, ``new_member``..."""
    stickers: tuple[str, ...] = field(default_factory=tuple)
    mentions: dict[str, str] = field(default_factory=dict)
    """``<@id>`` / ``<@&id>`` / ``<#id>`` -> what people see (``@Name``, ``@Role``, ``#chan``)."""
    thread: str | None = None
    """The thread's name when the message was sent in a thread of the channel."""
    reply_to: int | None = None


def extract_custom_emotes(content: str) -> tuple[str, list[Emote]]:
    """Replace ``<:name:id>`` (``<a:...>`` when animated) by ``name``; the emotes and positions.

    Positions are inclusive character indexes into the returned text, as for Twitch emotes.
    """
    pieces: list[str] = []
    found: dict[str, Emote] = {}
    length = 0
    last = 0
    for match in CUSTOM_EMOTE.finditer(content):
        before = content[last : match.start()]
        pieces.append(before)
        length += len(before)
        animated, name, emote_id = match.groups()
        start, end = length, length + len(name) - 1
        emote = found.get(emote_id)
        if emote is None:
            url = f"{EMOJI_CDN}/{emote_id}.{'gif' if animated else 'png'}"
            emote = found[emote_id] = Emote(name=name, url=url)
        emote.positions.append((start, end))
        pieces.append(name)
        length += len(name)
        last = match.end()
    pieces.append(content[last:])
    return "".join(pieces), list(found.values())


def resolve_mentions(content: str, mentions: dict[str, str]) -> str:
    """``<@81384788765712384>`` -> ``@Name`` (and roles, channels) as a Discord client shows
    them; a mention of someone Discord did not describe becomes ``@unknown-user``."""

    def name(match: re.Match[str]) -> str:
        kind, snowflake = match.groups()
        resolved = mentions.get(f"{kind.rstrip('!')}{snowflake}")
        if resolved:
            return resolved
        return {"#": "#unknown-channel", "@&": "@unknown-role"}.get(kind, "@unknown-user")

    return MENTION.sub(name, content)


def _badges(author: DiscordAuthor, moderator: bool, subscriber: bool) -> list[str] | None:
    badges = [
        name
        for name, has in (
            ("owner", author.is_owner),
            ("moderator", moderator),
            ("booster", author.is_booster),
            ("subscriber", subscriber and not author.is_booster),
            ("bot", author.bot),
        )
        if has
    ]
    badges += [role for role in author.roles if role.casefold() not in badges]
    return badges[:MAX_BADGES] or None


def map_message(
    chat: DiscordChat,
    *,
    moderator_roles: Iterable[str] = (),
    subscriber_roles: Iterable[str] = (),
) -> NormalizedChatMessage:
    """A guild message -> a chat message ``discord:<message id>``.

    Moderator: the guild owner, a member whose permissions allow moderating, or one holding a
    role named in ``moderator_roles``. Subscriber: a server booster or a holder of a role named
    in ``subscriber_roles`` (role names compare without case).
    """
    roles = {role.casefold() for role in chat.author.roles}
    moderator = (
        chat.author.is_owner
        or chat.author.can_moderate
        or bool(roles & {name.casefold() for name in moderator_roles})
    )
    subscriber = chat.author.is_booster or bool(
        roles & {name.casefold() for name in subscriber_roles}
    )
    text, emotes = extract_custom_emotes(resolve_mentions(chat.content, chat.mentions))
    extras = [f"[sticker: {name}]" for name in chat.stickers]
    extras += [f"[{name}]" for name in chat.attachments]
    if extras:
        files = " ".join(extras)
        text = f"{text} {files}" if text else files
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
        emotes = [
            Emote(name=e.name, url=e.url, positions=[p for p in e.positions if p[1] < MAX_TEXT - 1])
            for e in emotes
        ]
        emotes = [e for e in emotes if e.positions]
    return NormalizedChatMessage(
        id=f"discord:{chat.id}",
        platform=PLATFORM,
        username=chat.author.username[:100],
        display_name=(chat.author.display_name or None) and chat.author.display_name[:100],
        text=text,
        badges=_badges(chat.author, moderator, subscriber),
        is_subscriber=subscriber,
        is_moderator=moderator,
        timestamp=chat.created_at,
        emotes=emotes or None,
        user_id=str(chat.author.id),
        thread=chat.thread[:200] if chat.thread else None,
        reply_parent=ReplyParent(id=f"discord:{chat.reply_to}") if chat.reply_to else None,
    )


def map_item(
    chat: DiscordChat,
    *,
    moderator_roles: Iterable[str] = (),
    subscriber_roles: Iterable[str] = (),
) -> NormalizedChatMessage | PlatformEvent | None:
    """A guild message -> chat, a platform event (a join, a boost), or ``None``.

    A chat message with nothing to show (no text, sticker or file) and system messages that are
    not something a fan did (:data:`IGNORED_SYSTEM_TYPES`) give ``None``: never an empty line.
    """
    if chat.kind in SYSTEM_EVENTS:
        kind, words = SYSTEM_EVENTS[chat.kind]
        return PlatformEvent(
            id=f"discord:{chat.id}",
            platform=PLATFORM,
            kind=kind,
            username=chat.author.username[:100],
            display_name=(chat.author.display_name or None) and chat.author.display_name[:100],
            user_id=str(chat.author.id),
            count=1,
            detail=words,
            timestamp=chat.created_at,
        )
    if chat.kind not in CHAT_TYPES:
        return None
    message = map_message(chat, moderator_roles=moderator_roles, subscriber_roles=subscriber_roles)
    return message if message.text.strip() else None


def map_deletions(
    message_ids: Iterable[int], reason: str = "deleted on Discord"
) -> list[ChatDelete]:
    """``MESSAGE_DELETE`` / ``MESSAGE_DELETE_BULK`` -> one deletion per message id, in order."""
    return [ChatDelete(message_id=f"discord:{mid}", reason=reason) for mid in sorted(message_ids)]
