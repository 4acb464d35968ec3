"""Twitch chat through EventSub over WebSocket, with twitchio 3 (``--eventsub``).

The second Twitch mode, for a bot account with an app (client id and secret) and a user access
token with ``user:read:chat``: twitchio logs in (app token by client credentials, the user token
validated), looks the channel up, opens the EventSub WebSocket and subscribes to
``channel.chat.message``, ``channel.chat.message_delete``, ``channel.chat.clear_user_messages``
and ``channel.chat.clear``. twitchio itself answers keepalives and ``session_reconnect``; the
worker runtime retries the login and subscription with backoff.

Every endpoint is a setting (``VSTUDIO_TWITCH_API_URL``, ``VSTUDIO_TWITCH_AUTH_URL``,
``VSTUDIO_TWITCH_EVENTSUB_URL``) applied through twitchio's own URL constants, so tests drive
the real library against a local server. The mapping functions only read the library's models.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SecretStr, ValidationError

from broker.models import ChatDelete, NormalizedChatMessage, Platform, now_ms
from config.settings import PartSettings
from ingest.base import AdapterFatal, AdapterState, AdapterStatus, Emit
from ingest.batching import CLEAR_ALL_USERS
from ingest.twitch import normalize_channel
from ingest.twitch_map import EMOTE_CDN

if TYPE_CHECKING:
    import twitchio

__all__ = [
    "EventSubSettings",
    "TwitchEventSub",
    "chat_message",
    "emote_fields",
]

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
    """A ``channel.chat.message`` notification as a NormalizedChatMessage."""
    badges = [badge.set_id for badge in message.badges]
    chatter = message.chatter
    stamp = message.timestamp
    emotes = emote_fields(message.fragments) or None
    return NormalizedChatMessage(
        id=f"twitch:{message.id}",
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
    )


def _point_twitchio_at(settings: EventSubSettings) -> None:
    """Redirect twitchio's endpoints (its own URL constants) to the configured ones."""
    from twitchio.eventsub import websockets
    from twitchio.http import Route

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
        ):
            await client.subscribe_websocket(
                kind(broadcaster_user_id=broadcaster, user_id=user_id), token_for=user_id
            )

    async def _on_message(self, message: Any) -> None:
        try:
            item = chat_message(message)
        except (ValidationError, ValueError, AttributeError) as exc:
            log.warning("Twitch EventSub message skipped: %s", exc)
            return
        self._deliver(item)

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
