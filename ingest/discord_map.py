"""Discord messages to our models, without sockets.

:mod:`ingest.discord` reads a ``discord.Message`` (built by discord.py from the gateway's
``MESSAGE_CREATE``) into a :class:`DiscordChat`, a plain record of what we use; everything from
there on (badges, moderator flag, custom emotes, deletions) is here and tested on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from broker.models import ChatDelete, Emote, NormalizedChatMessage, Platform

__all__ = [
    "DiscordAuthor",
    "DiscordChat",
    "extract_custom_emotes",
    "map_deletions",
    "map_message",
]

PLATFORM = Platform.DISCORD
MAX_TEXT = 2000
MAX_BADGES = 10
CUSTOM_EMOTE = re.compile(r"<(a?):([A-Za-z0-9_~]{1,32}):(\d{15,21})>")
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
    text, emotes = extract_custom_emotes(chat.content)
    if chat.attachments:
        files = " ".join(f"[{name}]" for name in chat.attachments)
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
    )


def map_deletions(
    message_ids: Iterable[int], reason: str = "deleted on Discord"
) -> list[ChatDelete]:
    """``MESSAGE_DELETE`` / ``MESSAGE_DELETE_BULK`` -> one deletion per message id, in order."""
    return [ChatDelete(message_id=f"discord:{mid}", reason=reason) for mid in sorted(message_ids)]
