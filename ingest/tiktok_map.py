"""TikTok LIVE webcast messages (TikTokLive's protobuf classes) to our models, without sockets.

The functions read the RAW protobuf fields of the ``Webcast*Message`` classes that TikTokLive
parses (its event classes are subclasses of them), not TikTokLive's convenience helpers:
``ExtendedUser.is_moderator`` looks for ``badge.badge_scene`` and ``badge.log_extra`` which the
v3 schema no longer has (they are ``scene_type`` and ``privilege_log_extra``), so it is always
false. Moderator and subscriber come from ``user_identity`` (``is_moderator_of_anchor``,
``is_subscriber_of_anchor``), the user's ``user_attr`` admin flags, and the badge list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.models import (
    ChatDelete,
    Emote,
    EventKind,
    NormalizedChatMessage,
    Platform,
    PlatformEvent,
    now_ms,
)

__all__ = [
    "LikeWindow",
    "badges_of",
    "delete_items",
    "gift_event",
    "like_event",
    "live_ended",
    "map_comment",
    "map_emote_chat",
    "question_event",
    "social_event",
    "subscribe_event",
    "timestamp_of",
    "viewers_event",
]

PLATFORM = Platform.TIKTOK
MAX_TEXT = 2000

# BadgeSceneType values of the v3 schema (TikTokLiveProto webcast.model.data.BadgeSceneType).
SCENE_ADMIN = 1
SCENE_SUBSCRIBER = 4
SCENE_RANK_LIST = 6
SCENE_NEW_SUBSCRIBER = 7
SCENE_USER_GRADE = 8
SCENE_FANS = 10
SCENE_ANCHOR = 12
BADGE_NAMES = {
    SCENE_ADMIN: "moderator",
    SCENE_SUBSCRIBER: "subscriber",
    SCENE_NEW_SUBSCRIBER: "subscriber",
    SCENE_RANK_LIST: "top_gifter",
    SCENE_USER_GRADE: "gifter",
    SCENE_FANS: "fan_club",
    SCENE_ANCHOR: "host",
}
CONTROL_STREAM_ENDED = 3
CONTROL_STREAM_SUSPENDED = 4


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def timestamp_of(common: Any) -> int:
    """``common.create_time`` in milliseconds (TikTok sends ms; seconds are converted)."""
    created = int(getattr(common, "create_time", 0) or 0)
    if created <= 0:
        return now_ms()
    return created * 1000 if created < 10**11 else created


def _id(common: Any, fallback: str) -> str:
    msg_id = int(getattr(common, "msg_id", 0) or 0)
    return f"tiktok:{msg_id}" if msg_id else f"tiktok:{fallback}"


def _names(user: Any) -> tuple[str, str | None, str | None]:
    """(username = the @handle, display name = the nickname, user id)."""
    if user is None:
        return "unknown", None, None
    handle = user.display_id or user.nickname or str(user.id or "unknown")
    nickname = user.nickname or None
    return (
        _clip(handle, 100),
        _clip(nickname, 100) if nickname else None,
        (str(user.id) if user.id else None),
    )


def badges_of(user: Any) -> list[str]:
    """The user's badge list as names (``gifter``, ``fan_club``, ``moderator``...), in order.

    Names only, without the level, as Twitch badges are given (``subscriber``, not
    ``subscriber/12``), so clients can key icons on the name.
    """
    names: list[str] = []
    for badge in getattr(user, "badge_list", None) or []:
        name = BADGE_NAMES.get(int(badge.scene_type))
        if name is not None and name not in names:
            names.append(name)
    return names


def _flags(user: Any, identity: Any) -> tuple[list[str], bool, bool]:
    badges = badges_of(user)
    attr = getattr(user, "user_attr", None)
    moderator = bool(
        (identity is not None and identity.is_moderator_of_anchor)
        or (attr is not None and (attr.is_admin or attr.is_super_admin))
        or "moderator" in badges
    )
    subscribe = getattr(user, "subscribe_info", None)
    subscriber = bool(
        (identity is not None and identity.is_subscriber_of_anchor)
        or (subscribe is not None and subscribe.is_subscribed_to_anchor)
        or "subscriber" in badges
    )
    if moderator and "moderator" not in badges:
        badges.insert(0, "moderator")
    if subscriber and "subscriber" not in badges:
        badges.append("subscriber")
    return badges, subscriber, moderator


def map_comment(message: Any) -> NormalizedChatMessage:
    """``WebcastChatMessage`` -> a chat message ``tiktok:<msg_id>``."""
    username, display, user_id = _names(message.user)
    badges, subscriber, moderator = _flags(message.user, message.user_identity)
    return NormalizedChatMessage(
        id=_id(message.common, f"{user_id}:{timestamp_of(message.common)}"),
        platform=PLATFORM,
        username=username,
        display_name=display,
        text=_clip(message.content or "", MAX_TEXT),
        badges=badges or None,
        is_subscriber=subscriber,
        is_moderator=moderator,
        timestamp=timestamp_of(message.common),
        user_id=user_id,
    )


def map_emote_chat(message: Any) -> NormalizedChatMessage:
    """``WebcastEmoteChatMessage``: a chat line made of subscriber emotes only.

    TikTok gives each emote an id and an image, no name: the text is ``:<emote id>:`` per emote
    (what a client without images shows) and ``emotes`` carries each image at its position.
    """
    username, display, user_id = _names(message.user)
    badges, subscriber, moderator = _flags(message.user, message.user_identity)
    words: list[str] = []
    emotes: list[Emote] = []
    cursor = 0
    for emote in message.emote_list or []:
        word = f":{emote.emote_id}:"
        urls = list(getattr(emote.image, "url_list", None) or [])
        if urls:
            emotes.append(
                Emote(name=word, url=urls[0], positions=[(cursor, cursor + len(word) - 1)])
            )
        words.append(word)
        cursor += len(word) + 1
    return NormalizedChatMessage(
        id=_id(message.common, f"{user_id}:{timestamp_of(message.common)}"),
        platform=PLATFORM,
        username=username,
        display_name=display,
        text=_clip(" ".join(words), MAX_TEXT),
        badges=badges or None,
        is_subscriber=subscriber,
        is_moderator=moderator,
        timestamp=timestamp_of(message.common),
        user_id=user_id,
        emotes=emotes or None,
    )


def _event(
    message: Any,
    kind: EventKind,
    count: int | None = None,
    detail: str | None = None,
    **money: Any,
) -> PlatformEvent:
    username, display, user_id = _names(message.user)
    return PlatformEvent(
        id=_id(message.common, f"{kind}:{username}:{timestamp_of(message.common)}"),
        platform=PLATFORM,
        kind=kind,
        username=username,
        display_name=display,
        user_id=user_id,
        count=count,
        detail=_clip(detail, 300) if detail else None,
        timestamp=timestamp_of(message.common),
        **money,
    )


@dataclass
class LikeWindow:
    """Likes summed over a window, so a tapping crowd is one event per window, not hundreds.

    TikTok sends a ``WebcastLikeMessage`` per batch of taps per user; :meth:`add` sums them and
    :meth:`flush` (once per window) gives one ``like`` event: ``count`` is every like in the
    window, the user the one who liked most, ``detail`` how many people liked. Memory is bounded:
    at most ``max_users`` people are told apart in one window; the likes of the rest still count.
    """

    max_users: int = 1000
    by_user: dict[str, tuple[int, str | None, str | None]] = field(default_factory=dict)
    others: int = 0
    first_id: str | None = None
    last_timestamp: int = 0
    room_total: int = 0

    def add(self, message: Any) -> None:
        username, display, user_id = _names(message.user)
        count = max(int(message.count), 0)
        self.first_id = self.first_id or _id(message.common, f"like:{username}")
        self.last_timestamp = timestamp_of(message.common)
        self.room_total = max(self.room_total, int(message.total or 0))
        if username in self.by_user:
            known, _, _ = self.by_user[username]
            self.by_user[username] = (known + count, display, user_id)
        elif len(self.by_user) < self.max_users:
            self.by_user[username] = (count, display, user_id)
        else:
            self.others += count

    def flush(self) -> PlatformEvent | None:
        """The window's one ``like`` event (its id is the window's first batch), or ``None``."""
        if self.first_id is None:
            return None
        total = self.others + sum(count for count, _, _ in self.by_user.values())
        people = len(self.by_user) + (1 if self.others else 0)
        top = max(self.by_user.items(), key=lambda pair: pair[1][0], default=None)
        username, (_, display, user_id) = top if top else ("viewers", (0, None, None))
        detail = f"{people} people" if people > 1 else None
        if self.room_total:
            detail = f"{detail + ', ' if detail else ''}{self.room_total} likes in total"
        event = PlatformEvent(
            id=f"{self.first_id}:likes",
            platform=PLATFORM,
            kind="like",
            username=username,
            display_name=display,
            user_id=user_id,
            count=total,
            detail=detail,
            timestamp=self.last_timestamp,
        )
        self.by_user.clear()
        self.others, self.first_id, self.room_total = 0, None, 0
        return event


def like_event(message: Any) -> PlatformEvent:
    """``WebcastLikeMessage``: ``count`` likes by one user (TikTok batches taps)."""
    detail = f"{message.total} likes in total" if message.total else None
    return _event(message, "like", max(int(message.count), 0), detail)


def gift_event(message: Any) -> PlatformEvent | None:
    """``WebcastGiftMessage``; ``None`` while a streak is still running.

    A streakable gift (``gift.type == 1``) sends a message per tap with a growing
    ``repeat_count``; only the last one (``repeat_end == 1``) counts, so a streak is one event.
    The amount is TikTokLive's own ``GiftEvent.value`` in diamonds: that property is
    ``repeat_count * diamond_count * 0.005`` USD, a rate TikTok does not publish, so the ledger
    keeps the diamonds and converts only with a configured ``ledger_usd_rates`` entry.
    """
    gift = message.gift
    streakable = gift is not None and int(gift.type) == 1
    if streakable and not message.repeat_end:
        return None
    name = (gift.name if gift is not None else "") or f"gift {message.gift_id}"
    diamonds = int(gift.diamond_count) if gift is not None else 0
    count = max(int(message.repeat_count), 1)
    money: dict[str, Any] = {}
    if diamonds > 0:  # the value TikTok gives: diamonds each, times the repeats
        money = {"amount_minor": diamonds * count, "currency": "DIAMONDS"}
    return _event(message, "gift", count, name, **money)


def social_event(message: Any) -> PlatformEvent | None:
    """``WebcastSocialMessage``: a follow or a share, told apart by the display text key
    (``pm_main_follow_message...``, ``pm_mt_guidance_share...``) and, failing that, ``action``
    (1 follow, 3 share)."""
    display = message.common.display_text if message.common is not None else None
    key = (display.key if display is not None else "") or ""
    if "follow" in key or (not key and int(message.action) == 1):
        return _event(message, "follow", max(int(message.follow_count), 0) or None)
    if "share" in key or (not key and int(message.action) == 3):
        return _event(message, "share", max(int(message.share_count), 0) or None)
    return None


def subscribe_event(message: Any) -> PlatformEvent:
    """``WebcastSubNotifyMessage``: a subscription (``resub`` after the first month)."""
    months = max(int(message.sub_month or 0), 0)
    kind: EventKind = "resub" if months > 1 else "sub"
    detail = f"{months} months" if months else None
    return _event(message, kind, 1, detail, months=months or None)


def question_event(message: Any) -> PlatformEvent | None:
    """``WebcastQuestionNewMessage``: a viewer's question in the LIVE's Q&A panel."""
    question = message.data
    if question is None or not question.content:
        return None
    username, display, user_id = _names(question.user)
    return PlatformEvent(
        id=f"tiktok:question:{question.question_id}"
        if question.question_id
        else _id(message.common, f"question:{username}"),
        platform=PLATFORM,
        kind="question",
        username=username,
        display_name=display,
        user_id=user_id,
        message=_clip(question.content, MAX_TEXT),
        timestamp=timestamp_of(message.common),
    )


def viewers_event(message: Any) -> PlatformEvent | None:
    """``WebcastRoomUserSeqMessage``: how many watch the LIVE now (``total``)."""
    if message.common is None or not int(message.common.msg_id or 0):
        return None  # no id of its own: it could not be deduplicated
    return PlatformEvent(
        id=_id(message.common, "viewers"),
        platform=PLATFORM,
        kind="viewers",
        username="tiktok",
        count=max(int(message.total), 0),
        timestamp=timestamp_of(message.common),
    )


def delete_items(message: Any, known_users: Mapping[int, str]) -> list[ChatDelete]:
    """``WebcastImDeleteMessage``: deleted message ids, and users whose messages all go.

    TikTok names users by numeric id only; ``known_users`` maps the ids seen in this connection
    to handles, and an id never seen had no message here to delete.
    """
    items = [
        ChatDelete(message_id=f"tiktok:{msg_id}", reason="deleted on TikTok")
        for msg_id in message.delete_msg_ids
    ]
    for user_id in message.delete_user_ids:
        handle = known_users.get(int(user_id))
        if handle:
            items.append(ChatDelete(username=handle, platform=PLATFORM, reason="removed on TikTok"))
    return items


def live_ended(message: Any) -> bool:
    """``WebcastControlMessage`` saying the LIVE ended or was suspended."""
    return int(message.action) in (CONTROL_STREAM_ENDED, CONTROL_STREAM_SUSPENDED)
