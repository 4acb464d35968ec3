"""Twitch chat through EventSub over WebSocket, with twitchio 3 (``--eventsub``).

The second Twitch mode, for a bot account with an app (client id and secret) and a user access
token with ``user:read:chat``: twitchio logs in (app token by client credentials, the user token
validated), looks the channel up, opens the EventSub WebSocket and subscribes to
``channel.chat.message``, ``channel.chat.message_delete``, ``channel.chat.clear_user_messages``,
``channel.chat.clear`` and ``channel.chat.notification`` (subs, resubs, gifts, raids,
announcements...: the same ``msg-id`` family as IRC's USERNOTICE, with the same message ids, so
an IRC worker and an EventSub worker on one channel publish each once). twitchio itself answers
keepalives and ``session_reconnect``; the worker runtime retries the login and subscription with
backoff.

Bits come from ``channel.chat.message``'s ``cheer``: every cheer is a chat message, and its
message id is the one IRC gives the same cheer, so the ledger counts it once whichever transport
(or both) read it. ``channel.cheer`` is deliberately not subscribed: its events carry no message
id, so counting them as well would count every cheer twice, and Twitch only grants it to the
broadcaster's own token (``bits:read``), which a chat bot does not hold.

Every endpoint is a setting (``VSTUDIO_TWITCH_API_URL``, ``VSTUDIO_TWITCH_AUTH_URL``,
``VSTUDIO_TWITCH_EVENTSUB_URL``) applied through twitchio's own URL constants, so tests drive
the real library against a local server. The mapping functions only read the library's models.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SecretStr, ValidationError

from broker.models import (
    ChatDelete,
    EventKind,
    NormalizedChatMessage,
    Platform,
    PlatformEvent,
    ReplyParent,
    now_ms,
)
from config.settings import PartSettings
from ingest.base import AdapterFatal, AdapterState, AdapterStatus, Emit
from ingest.batching import CLEAR_ALL_USERS
from ingest.twitch import normalize_channel
from ingest.twitch_map import EMOTE_CDN, SUB_PLANS, cheer_of, reward_of

if TYPE_CHECKING:
    import twitchio

__all__ = [
    "IGNORED_NOTICE_TYPES",
    "NOTICE_TYPE_KINDS",
    "EventSubSettings",
    "TwitchEventSub",
    "chat_items",
    "chat_message",
    "chat_notification",
    "emote_fields",
]

NOTICE_TYPE_KINDS: dict[str, EventKind] = {
    "sub": "sub",
    "resub": "resub",
    "sub_gift": "giftsub",
    "community_sub_gift": "giftbomb",
    "gift_paid_upgrade": "subupgrade",
    "prime_paid_upgrade": "subupgrade",
    "raid": "raid",
    "pay_it_forward": "payforward",
    "announcement": "announcement",
    "bits_badge_tier": "milestone",
    "watch_streak": "milestone",
}
"""``channel.chat.notification`` ``notice_type`` -> event kind; ``shared_chat_<type>`` maps as
``<type>`` (a notice from another channel of a shared chat session)."""

IGNORED_NOTICE_TYPES: dict[str, str] = {
    "unraid": "a raid that was called off never arrives: nothing happened in this channel",
    "charity_donation": "money given to a charity, not to the artist: not in the artist's ledger",
    "modiversary": "a moderator's anniversary on the channel: not a fan's event",
}
"""``notice_type`` values deliberately mapped to nothing, and why."""

log = logging.getLogger("vstudio.ingest.twitch_eventsub")

REFUSED = (400, 401, 403)
"""HTTP statuses of a refused credential: retrying cannot help."""


class EventSubSettings(PartSettings):
    """The app credentials and endpoints of the EventSub mode (``[ingest]`` table, env, flags)."""

    section: ClassVar[str] = "ingest"

    twitch_client_id: str | None = None
    twitch_client_secret: SecretStr | None = None
    twitch_refresh_token: SecretStr | None = None
    twitch_api_url: str = "https://api.twitch.tv/helix/"
    twitch_auth_url: str = "https://id.twitch.tv/"
    twitch_eventsub_url: str = "wss://eventsub.wss.twitch.tv/ws"
    twitch_keepalive: int = Field(default=30, ge=10, le=600, description="keepalive seconds")


def emote_fields(fragments: list[Any]) -> list[dict[str, Any]]:
    """Emote fragments as ``{name, url, positions}``, positions in code points of the text."""
    by_id: dict[str, dict[str, Any]] = {}
    offset = 0
    for fragment in fragments:
        text = fragment.text or ""
        emote = getattr(fragment, "emote", None)
        if emote is not None and text:
            entry = by_id.setdefault(
                emote.id,
                {"name": text[:100], "url": EMOTE_CDN.format(id=emote.id), "positions": []},
            )
            entry["positions"].append((offset, offset + len(text) - 1))
        offset += len(text)
    return list(by_id.values())


def chat_message(message: twitchio.ChatMessage) -> NormalizedChatMessage:
    """A ``channel.chat.message`` notification as a NormalizedChatMessage.

    Shared chat: a message sent in another channel of the session has ``source_id`` (the id
    every channel of the session sees) and ``source_badges`` (the sender's standing there).
    """
    source = getattr(message, "source_broadcaster", None)
    source_id = getattr(message, "source_id", None)
    shared = source is not None and source_id
    badge_list = (getattr(message, "source_badges", None) or []) if shared else message.badges
    badges = [badge.set_id for badge in badge_list]
    chatter = message.chatter
    stamp = message.timestamp
    emotes = emote_fields(message.fragments) or None
    reply = getattr(message, "reply", None)
    parent = None
    if reply is not None:
        parent = ReplyParent(
            id=f"twitch:{reply.parent_message_id}",
            username=(reply.parent_user.name or "").lower() or None,
            display_name=reply.parent_user.display_name or None,
            text=reply.parent_message_body or None,
        )
    return NormalizedChatMessage(
        id=f"twitch:{source_id if shared else message.id}",
        platform=Platform.TWITCH,
        username=(chatter.name or "").lower(),
        display_name=chatter.display_name or None,
        text=message.text,
        badges=badges or None,
        is_subscriber="subscriber" in badges or "founder" in badges,
        is_moderator="moderator" in badges or "broadcaster" in badges,
        timestamp=int(stamp.timestamp() * 1000) if stamp else now_ms(),
        emotes=emotes,  # type: ignore[arg-type]  # dicts, validated into Emote with the message
        user_id=str(chatter.id) if chatter.id else None,
        reply_parent=parent,
        first_message=True if getattr(message, "type", "") == "user_intro" else None,
        highlighted=True if getattr(message, "type", "") == "channel_points_highlighted" else None,
        source_channel=str(source.id) if shared and source is not None else None,
    )


def chat_items(message: twitchio.ChatMessage) -> list[NormalizedChatMessage | PlatformEvent]:
    """The chat message, and its cheer (bits, for the ledger) or redeemed reward if any."""
    chat = chat_message(message)
    items: list[NormalizedChatMessage | PlatformEvent] = [chat]
    cheer = getattr(message, "cheer", None)
    if cheer is not None and cheer.bits > 0:
        items.append(cheer_of(chat, cheer.bits))
    reward = getattr(message, "channel_points_id", None)
    if reward:
        items.append(reward_of(chat, reward))
    return items


def _notice_parts(notice: Any) -> tuple[str, Any, bool]:
    """(notice type without ``shared_chat_``, its detail object, whether from shared chat)."""
    notice_type: str = notice.notice_type
    shared = notice_type.startswith("shared_chat_")
    base = notice_type.removeprefix("shared_chat_")
    attribute = {"sub_gift": "sub_gift", "community_sub_gift": "community_sub_gift"}.get(base, base)
    detail = getattr(notice, f"shared_{attribute}" if shared else attribute, None)
    return base, detail, shared


def chat_notification(notice: Any) -> PlatformEvent | None:
    """A ``channel.chat.notification`` (twitchio's ``ChatNotification``) as a platform event,
    with the fields the IRC mapping gives the same notice (``ingest/twitch_map.py``).

    In a shared chat session the id is ``source_message_id``, the one every channel of the
    session (and IRC's ``source-id``) gives it, and ``sourceChannel`` the channel it happened in
    when that is another one (see :func:`_keep_shared_chat_source`).
    """
    base, detail, _ = _notice_parts(notice)
    kind = NOTICE_TYPE_KINDS.get(base)
    if kind is None:
        return None  # an IGNORED_NOTICE_TYPES value, or one Twitch added since
    chatter = notice.chatter
    count: int | None = None
    group: str | None = None
    tier = SUB_PLANS.get(str(getattr(detail, "tier", "") or "")) if detail is not None else None
    if getattr(detail, "prime", False):
        tier = "Prime"
    months = getattr(detail, "cumulative_months", None) or getattr(detail, "months", None)
    recipient = None
    words: str | None = tier
    if kind in ("sub", "resub"):
        count = 1
    elif kind == "giftsub" and detail is not None:
        group = detail.community_gift_id or None
        count = 0 if group else 1  # a line of a gift bomb: its community_sub_gift counted it
        recipient = detail.recipient
        months = None
    elif kind == "giftbomb" and detail is not None:
        count, group = detail.total, detail.id
    elif kind == "raid" and detail is not None:
        count = detail.viewer_count
    elif base == "bits_badge_tier" and detail is not None:
        count, words = detail.tier, "bits badge"
    elif base == "watch_streak" and detail is not None:
        count, words = detail.streak, "watch-streak"
    elif kind == "announcement" and detail is not None:
        words = detail.colour
    stamp = getattr(notice, "timestamp", None)
    anonymous = bool(getattr(notice, "anonymous", False))
    username = "ananonymousgifter" if anonymous else (chatter.name or "unknown").lower()
    source_id = getattr(notice, "source_id", None)
    room = getattr(notice, "source_room", None)
    home = getattr(getattr(notice, "broadcaster", None), "id", None)
    return PlatformEvent(
        id=f"twitch:{source_id or notice.id}",
        platform=Platform.TWITCH,
        kind=kind,
        username=username,
        display_name=None if anonymous else chatter.display_name or None,
        user_id=None if anonymous else str(chatter.id) if chatter.id else None,
        count=count,
        detail=words,
        tier=tier,
        months=months if isinstance(months, int) and months > 0 else None,
        recipient=(recipient.name or "").lower() or None if recipient is not None else None,
        recipient_display_name=recipient.display_name or None if recipient is not None else None,
        group_id=group,
        message=notice.text or None,
        timestamp=int(stamp.timestamp() * 1000) if stamp else now_ms(),
        source_channel=str(room) if room and str(room) != str(home) else None,
    )


def _keep_shared_chat_source() -> None:
    """Make twitchio keep a chat notification's ``source_message_id`` and
    ``source_broadcaster_user_id``: twitchio 3's ``ChatNotification`` drops them, and without
    them a shared chat notice is keyed per channel (two channels of the session, or an IRC
    worker beside this one, would publish it twice) and its origin is unknown. A subclass
    registers itself for ``channel.chat.notification`` (twitchio's ``__init_subclass__``)."""
    from twitchio.models.eventsub_ import BaseEvent, ChatNotification

    if BaseEvent._registry.get(ChatNotification.subscription_type) is not ChatNotification:
        return  # already done

    class SourcedChatNotification(ChatNotification):
        __slots__ = ("source_id", "source_room")

        def __init__(self, payload: Any, *, http: Any) -> None:
            super().__init__(payload, http=http)
            self.source_id: str | None = payload.get("source_message_id")
            self.source_room: str | None = payload.get("source_broadcaster_user_id")


def _point_twitchio_at(settings: EventSubSettings) -> None:
    """Redirect twitchio's endpoints (its own URL constants) to the configured ones."""
    from twitchio.eventsub import websockets
    from twitchio.http import Route

    _keep_shared_chat_source()
    Route.BASE = settings.twitch_api_url.rstrip("/") + "/"
    Route.ID_BASE = settings.twitch_auth_url.rstrip("/") + "/"
    websockets.WSS = settings.twitch_eventsub_url


class TwitchEventSub:
    """Adapter: one channel's chat through twitchio's EventSub WebSocket."""

    platform = Platform.TWITCH

    def __init__(self, channel: str, token: str, settings: EventSubSettings) -> None:
        if not settings.twitch_client_id or not settings.twitch_client_secret:
            raise ValueError(
                "--eventsub needs the app's --client-id and --client-secret "
                "(VSTUDIO_TWITCH_CLIENT_ID, VSTUDIO_TWITCH_CLIENT_SECRET)"
            )
        if not token:
            raise ValueError("--eventsub needs a user access token (--token) with user:read:chat")
        self.channel = normalize_channel(channel)
        self.target = f"#{self.channel}"
        self.token = token.removeprefix("oauth:")
        self.settings = settings
        self.status = AdapterStatus()
        self._emit: Emit | None = None

    async def run(self, emit: Emit) -> None:
        """Log in, subscribe, and emit chat until cancelled (twitchio keeps the socket up)."""
        import twitchio
        from twitchio import eventsub

        _point_twitchio_at(self.settings)
        self._emit = emit
        settings = self.settings
        assert settings.twitch_client_id and settings.twitch_client_secret
        refresh = settings.twitch_refresh_token
        self.status.state = AdapterState.CONNECTING
        self.status.detail = settings.twitch_eventsub_url
        client = twitchio.Client(
            client_id=settings.twitch_client_id,
            client_secret=settings.twitch_client_secret.get_secret_value(),
            fetch_client_user=False,
        )
        for event, listener in (
            ("event_message", self._on_message),
            ("event_message_delete", self._on_delete),
            ("event_chat_clear_user", self._on_clear_user),
            ("event_chat_clear", self._on_clear),
            ("event_chat_notification", self._on_notification),
        ):
            client.add_listener(listener, event=event)
        try:
            await self._subscribe(client, twitchio, eventsub, refresh)
            self.status.state = AdapterState.CONNECTED
            self.status.detail = f"EventSub on #{self.channel}"
            await asyncio.Event().wait()
        finally:
            await client.close(save_tokens=False)

    async def _subscribe(
        self, client: Any, twitchio: Any, eventsub: Any, refresh: SecretStr | None
    ) -> None:
        try:
            await client.login(load_tokens=False, save_tokens=False)
        except twitchio.HTTPException as exc:
            if exc.status in REFUSED:
                raise AdapterFatal(
                    f"Twitch refused the app's --client-id/--client-secret: {exc}"
                ) from exc
            raise
        try:
            validated = await client.add_token(
                self.token, refresh.get_secret_value() if refresh else ""
            )
        except twitchio.HTTPException as exc:
            if exc.status in REFUSED:
                raise AdapterFatal(
                    f"Twitch refused the user access token (--token): {exc}"
                ) from exc
            raise
        user_id = str(validated.user_id)
        users = await client.fetch_users(logins=[self.channel])
        if not users:
            raise AdapterFatal(f"Twitch has no channel named {self.channel!r}")
        broadcaster = str(users[0].id)
        for kind in (
            eventsub.ChatMessageSubscription,
            eventsub.ChatMessageDeleteSubscription,
            eventsub.ChatClearUserMessagesSubscription,
            eventsub.ChatClearSubscription,
            eventsub.ChatNotificationSubscription,
        ):
            await client.subscribe_websocket(
                kind(broadcaster_user_id=broadcaster, user_id=user_id), token_for=user_id
            )

    async def _on_message(self, message: Any) -> None:
        try:
            items = chat_items(message)
        except (ValidationError, ValueError, AttributeError) as exc:
            log.warning("Twitch EventSub message skipped: %s", exc)
            return
        for item in items:
            self._deliver(item)

    async def _on_notification(self, notice: Any) -> None:
        try:
            event = chat_notification(notice)
        except (ValidationError, ValueError, AttributeError, TypeError) as exc:
            log.warning("Twitch EventSub notification skipped: %s", exc)
            return
        if event is not None:
            self._deliver(event)

    async def _on_delete(self, event: Any) -> None:
        self._deliver(ChatDelete(message_id=f"twitch:{event.message_id}", reason="deleted"))

    async def _on_clear_user(self, event: Any) -> None:
        username = (event.user.name or "").lower()
        if username:
            self._deliver(ChatDelete(username=username, platform=Platform.TWITCH, reason="banned"))

    async def _on_clear(self, event: Any) -> None:
        self._deliver(
            ChatDelete(username=CLEAR_ALL_USERS, platform=Platform.TWITCH, reason="chat cleared")
        )

    def _deliver(self, item: Any) -> None:
        if self._emit is not None:
            self._emit(item)
