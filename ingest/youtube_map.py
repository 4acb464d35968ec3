"""YouTube Data API v3 live chat: pure mapping from API JSON to our models, and error reading.

Nothing here does I/O. :mod:`ingest.youtube` fetches pages and hands each item to
:func:`map_chat_item`; an error body goes to :func:`classify_error`, which says whether retrying
can help and what a person should do.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from broker.ledger import MINOR_UNITS
from broker.models import (
    ChatDelete,
    EventKind,
    NormalizedChatMessage,
    Platform,
    PlatformEvent,
    now_ms,
)
from ingest.base import IngestItem

__all__ = [
    "IGNORED_TYPES",
    "YouTubeApiError",
    "author_flags",
    "channel_id_of",
    "chat_ended",
    "classify_error",
    "live_chat_id_of",
    "live_video_id_of",
    "map_chat_item",
    "parse_published_at",
    "video_id_from",
]

PLATFORM = Platform.YOUTUBE
MAX_TEXT = 2000
MAX_DETAIL = 300

QUOTA_ADVICE = (
    "The API key's daily quota is used up (it resets at midnight Pacific time). Each "
    "liveChatMessages.list call costs quota units, so a long stream can use a whole day's quota: "
    "ask for more quota in the Google Cloud console (APIs & Services > YouTube Data API v3 > "
    "Quotas), or run this worker with the key of another project."
)


class YouTubeApiError(Exception):
    """An error answer of the API: HTTP status, Google's ``reason``, and whether to retry.

    ``ended`` means the live chat is over (ended, not found, disabled): nothing more will come.
    """

    def __init__(
        self, status: int, reason: str, message: str, retryable: bool, ended: bool = False
    ) -> None:
        super().__init__(f"YouTube API {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retryable = retryable
        self.ended = ended


def classify_error(status: int, body: Any) -> YouTubeApiError:
    """Read Google's error body (``{"error": {"code", "message", "errors": [{reason}]}}``)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    details = error.get("errors") if isinstance(error.get("errors"), list) else []
    reason = str(details[0].get("reason", "")) if details and isinstance(details[0], dict) else ""
    if not reason:
        reason = str(error.get("status") or "unknown")
    message = str(error.get("message") or f"HTTP {status}")
    if reason in ("quotaExceeded", "dailyLimitExceeded"):
        return YouTubeApiError(status, reason, QUOTA_ADVICE, retryable=False)
    if reason in ("rateLimitExceeded", "userRateLimitExceeded") or status == 429:
        return YouTubeApiError(
            status, reason, f"{message} (polling too fast; backing off)", retryable=True
        )
    if reason in ("liveChatEnded", "liveChatNotFound", "liveChatDisabled"):
        words = {
            "liveChatEnded": "the live chat has ended",
            "liveChatNotFound": "the live chat does not exist (the stream is over or the id is "
            "wrong)",
            "liveChatDisabled": "live chat is turned off for this broadcast",
        }
        return YouTubeApiError(status, reason, words[reason], retryable=False, ended=True)
    if status in (400, 401, 403, 404):
        hint = {
            400: "check the API key (keyInvalid) and the ids given",
            401: "the OAuth token is invalid or expired; get a fresh one",
            403: "the key or token may not use the YouTube Data API v3 (enable it for the project)",
            404: "the id given does not exist",
        }[status]
        return YouTubeApiError(status, reason, f"{message}; {hint}", retryable=False)
    return YouTubeApiError(status, reason, message, retryable=True)


def live_chat_id_of(video_id: str, response: Any) -> str:
    """The ``activeLiveChatId`` of a ``videos.list(part=liveStreamingDetails)`` answer.

    Raises :class:`YouTubeApiError` (not retryable) when the video does not exist or has no live
    chat now, with words that say which.
    """
    items = response.get("items") if isinstance(response, dict) else None
    if not items:
        raise YouTubeApiError(404, "videoNotFound", f"no video with id {video_id!r}", False)
    details = items[0].get("liveStreamingDetails") or {}
    chat_id = details.get("activeLiveChatId")
    if chat_id:
        return str(chat_id)
    if details.get("actualEndTime"):
        why = "its broadcast has ended"
    elif details:
        why = "its broadcast has no active chat (not started yet, or chat is off)"
    else:
        why = "it is not a live broadcast"
    raise YouTubeApiError(404, "noActiveLiveChat", f"video {video_id!r}: {why}", False, ended=True)


VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")


def video_id_from(text: str) -> str:
    """A video id from an id or a URL people copy (``watch?v=``, ``youtu.be/``, ``/live/``).

    Raises ``ValueError`` with the reason when no id can be found.
    """
    text = text.strip()
    if VIDEO_ID.match(text):
        return text
    parts = urlsplit(text if "://" in text else f"https://{text}")
    candidates = parse_qs(parts.query).get("v", [])
    segments = [segment for segment in parts.path.split("/") if segment]
    if parts.hostname and parts.hostname.endswith("youtu.be") and segments:
        candidates.append(segments[0])
    if len(segments) >= 2 and segments[0] in ("live", "embed", "shorts", "v"):
        candidates.append(segments[1])
    for candidate in candidates:
        if VIDEO_ID.match(candidate):
            return candidate
    raise ValueError(f"{text!r} is not a YouTube video id or video URL")


def channel_id_of(handle: str, response: Any) -> str:
    """The channel id of an ``@handle`` from ``channels.list(forHandle=...)``."""
    for item in (response.get("items") if isinstance(response, dict) else None) or []:
        if item.get("id"):
            return str(item["id"])
    raise YouTubeApiError(404, "channelNotFound", f"no channel with handle {handle!r}", False)


def live_video_id_of(channel_id: str, response: Any) -> str:
    """The video id of a channel's live broadcast from ``search.list(eventType=live)``."""
    for item in (response.get("items") if isinstance(response, dict) else None) or []:
        video_id = (item.get("id") or {}).get("videoId")
        if video_id:
            return str(video_id)
    raise YouTubeApiError(
        404, "noLiveBroadcast", f"channel {channel_id!r} is not live now", retryable=False
    )


def chat_ended(page: dict[str, Any]) -> bool:
    """A ``liveChatMessages.list`` page says the chat went offline (``offlineAt`` is set)."""
    return bool(page.get("offlineAt"))


def parse_published_at(value: Any) -> int:
    """RFC 3339 ``publishedAt`` to Unix milliseconds; now when it is missing or malformed."""
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value).timestamp() * 1000)
        except ValueError:
            pass
    return now_ms()


def author_flags(author: dict[str, Any]) -> tuple[list[str], bool, bool]:
    """``authorDetails`` -> (badges, is_subscriber, is_moderator). A member is a sponsor."""
    badges = [
        name
        for name, key in (
            ("owner", "isChatOwner"),
            ("moderator", "isChatModerator"),
            ("member", "isChatSponsor"),
            ("verified", "isVerified"),
        )
        if author.get(key)
    ]
    is_moderator = bool(author.get("isChatModerator") or author.get("isChatOwner"))
    return badges, bool(author.get("isChatSponsor")), is_moderator


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _names(author: dict[str, Any], snippet: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(username, display name, channel id); YouTube's display name is the handle people see."""
    channel_id = author.get("channelId") or snippet.get("authorChannelId")
    display = author.get("displayName") or None
    username = display or channel_id or "unknown"
    return _clip(str(username), 100), _clip(display, 100) if display else None, channel_id


def _chat(
    item_id: str, snippet: dict[str, Any], author: dict[str, Any], text: str, extra: list[str]
) -> NormalizedChatMessage:
    username, display, channel_id = _names(author, snippet)
    badges, subscriber, moderator = author_flags(author)
    return NormalizedChatMessage(
        id=f"youtube:{item_id}",
        platform=PLATFORM,
        username=username,
        display_name=display,
        text=_clip(text, MAX_TEXT),
        badges=badges + extra or None,
        is_subscriber=subscriber,
        is_moderator=moderator,
        timestamp=parse_published_at(snippet.get("publishedAt")),
        user_id=channel_id,
    )


def _event(
    item_id: str,
    snippet: dict[str, Any],
    author: dict[str, Any],
    kind: EventKind,
    detail: str | None,
    count: int | None = None,
    **fields: Any,
) -> PlatformEvent:
    username, display, channel_id = _names(author, snippet)
    return PlatformEvent(
        id=f"youtube:{item_id}:{kind}",
        platform=PLATFORM,
        kind=kind,
        username=username,
        display_name=display,
        user_id=channel_id,
        count=count,
        detail=_clip(detail, MAX_DETAIL) if detail else None,
        timestamp=parse_published_at(snippet.get("publishedAt")),
        **fields,
    )


def _money(details: dict[str, Any]) -> dict[str, Any]:
    """``amountMicros`` + ``currency`` as ``amountMinor`` + ``currency``, and the ``tier``.

    YouTube gives micros (millionths) of the currency; the minor unit is cents for most, none
    for JPY or KRW (see broker.ledger.MINOR_UNITS). A missing or odd amount gives no money
    rather than a guessed one.
    """
    fields: dict[str, Any] = {}
    currency = details.get("currency")
    micros = str(details.get("amountMicros") or "")
    if isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency) and micros.isdigit():
        places = MINOR_UNITS.get(currency, 2)
        fields = {"amount_minor": int(micros) // 10 ** (6 - places), "currency": currency}
    if details.get("tier"):
        fields["tier"] = str(details["tier"])
    return fields


IGNORED_TYPES: dict[str, str] = {
    "tombstone": "a placeholder for a message that no longer exists; nothing to show",
    "chatEndedEvent": "the chat ended: the adapter reads offlineAt and stops (chat_ended)",
    "sponsorOnlyModeStartedEvent": "a chat setting of YouTube's, not something a fan did",
    "sponsorOnlyModeEndedEvent": "a chat setting of YouTube's, not something a fan did",
    "fanFundingEvent": "retired by YouTube in 2018 (replaced by Super Chat); never sent now",
    "messageRetractedEvent": "retracted messages are also sent as messageDeletedEvent",
}
"""``snippet.type`` values deliberately mapped to nothing, and why."""


def map_chat_item(item: dict[str, Any]) -> list[IngestItem]:
    """One ``liveChatMessage`` resource -> what the bus carries (often one item, maybe none).

    - ``textMessageEvent`` -> a chat message ``youtube:<id>``.
    - ``messageDeletedEvent`` -> a deletion of ``youtube:<deletedMessageId>``.
    - ``userBannedEvent`` -> a deletion of every message of that user, by channel id.
    - ``superChatEvent`` / ``superStickerEvent`` -> a ``superchat`` / ``supersticker`` event
      with ``amountMinor``, ``currency`` and ``tier`` (money for the ledger), plus the comment
      as chat (badge ``superchat``) so it shows in the chat too.
    - ``newSponsorEvent`` -> ``member``; ``memberMilestoneChatEvent`` -> ``milestone`` (its
      comment also as chat); ``membershipGiftingEvent`` -> ``membergift`` with the count;
      ``giftMembershipReceivedEvent`` -> ``giftsub`` with ``count: 0`` (the gifting event
      counted it) and the gifting message as ``groupId``.
    - ``pollEvent`` -> ``poll`` (question, options and tallies in ``detail``).
    Anything in :data:`IGNORED_TYPES`, or malformed, maps to nothing.
    """
    if not isinstance(item, dict):
        return []
    item_id = item.get("id")
    snippet = item.get("snippet") or {}
    author = item.get("authorDetails") or {}
    if not item_id or not isinstance(item_id, str) or not isinstance(snippet, dict):
        return []
    if not isinstance(author, dict):
        author = {}
    kind = snippet.get("type")
    if kind == "textMessageEvent":
        details = snippet.get("textMessageDetails") or {}
        text = details.get("messageText") or snippet.get("displayMessage") or ""
        return [_chat(item_id, snippet, author, text, [])]
    if kind == "messageDeletedEvent":
        deleted = (snippet.get("messageDeletedDetails") or {}).get("deletedMessageId")
        if not deleted:
            return []
        return [ChatDelete(message_id=f"youtube:{deleted}", reason="deleted on YouTube")]
    if kind == "userBannedEvent":
        details = snippet.get("userBannedDetails") or {}
        banned = details.get("bannedUserDetails") or {}
        channel_id = banned.get("channelId")
        if not channel_id:
            return []  # a display name is not unique: without the channel id, delete nothing
        ban = details.get("banType") or "permanent"
        seconds = details.get("banDurationSeconds")
        reason = f"{ban} ban on YouTube" + (f" ({seconds} s)" if seconds else "")
        return [ChatDelete(user_id=str(channel_id), platform=PLATFORM, reason=reason)]
    if kind == "superChatEvent":
        details = snippet.get("superChatDetails") or {}
        comment = details.get("userComment") or ""
        items: list[IngestItem] = [
            _event(
                item_id,
                snippet,
                author,
                "superchat",
                details.get("amountDisplayString") or None,
                message=_clip(comment, MAX_TEXT) if comment else None,
                **_money(details),
            )
        ]
        if comment:
            items.append(_chat(item_id, snippet, author, comment, ["superchat"]))
        return items
    if kind == "superStickerEvent":
        details = snippet.get("superStickerDetails") or {}
        sticker = details.get("superStickerMetadata") or {}
        detail = " ".join(
            part for part in (details.get("amountDisplayString"), sticker.get("altText")) if part
        )
        return [_event(item_id, snippet, author, "supersticker", detail or None, **_money(details))]
    if kind == "newSponsorEvent":
        details = snippet.get("newSponsorDetails") or {}
        level = details.get("memberLevelName")
        return [_event(item_id, snippet, author, "member", level, 1, tier=level or None)]
    if kind == "memberMilestoneChatEvent":
        details = snippet.get("memberMilestoneChatDetails") or {}
        months = details.get("memberMonth")
        comment = details.get("userComment")
        level = details.get("memberLevelName")
        items = [
            _event(
                item_id,
                snippet,
                author,
                "milestone",
                level,
                months=months,
                message=_clip(comment, MAX_TEXT) if comment else None,
            )
        ]
        if comment:
            items.append(_chat(item_id, snippet, author, comment, ["member"]))
        return items
    if kind == "membershipGiftingEvent":
        details = snippet.get("membershipGiftingDetails") or {}
        count = details.get("giftMembershipsCount")
        level = details.get("giftMembershipsLevelName")
        return [
            _event(
                item_id,
                snippet,
                author,
                "membergift",
                level,
                count if isinstance(count, int) else None,
                tier=level or None,
                group_id=f"youtube:{item_id}",
            )
        ]
    if kind == "giftMembershipReceivedEvent":
        details = snippet.get("giftMembershipReceivedDetails") or {}
        username, display, _ = _names(author, snippet)
        gifting = details.get("associatedMembershipGiftingMessageId")
        return [
            _event(
                item_id,
                snippet,
                author,
                "giftsub",
                details.get("memberLevelName"),
                0,  # counted by its membershipGiftingEvent
                recipient=username,
                recipient_display_name=display,
                group_id=f"youtube:{gifting}" if gifting else None,
            )
        ]
    if kind == "pollEvent":
        details = snippet.get("pollDetails") or {}
        metadata = details.get("metadata") or {}
        options = [
            f"{option.get('optionText', '?')}: {option.get('tally', '0')}"
            for option in metadata.get("options") or []
            if isinstance(option, dict)
        ]
        status = metadata.get("status") or ""
        question = metadata.get("questionText") or "poll"
        return [
            _event(
                item_id,
                snippet,
                author,
                "poll",
                f"{status} · {'; '.join(options)}" if status else "; ".join(options),
                message=_clip(question, MAX_TEXT),
            )
        ]
    return []
