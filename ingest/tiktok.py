"""TikTok LIVE chat through TikTokLive (the optional ``tiktok`` extra; modified-AGPL licence).

TikTokLive does the connection: it finds the room id on ``{app_url}/@user/live`` (skipped when
a room id is given), checks ``{webcast_url}/room/check_alive/``, asks the sign server
(``GET {sign_url}/webcast/fetch``) for the first ``ProtoMessageFetchResult``, whose
``push_server`` and ``route_params`` name the WebSocket to open, then reads gzip'd
``WebcastPushFrame``s from it, acknowledging them and sending heartbeats. This module listens
to its events and maps them with :mod:`ingest.tiktok_map`.

Where the endpoints are set: the sign server is per client (``web_kwargs={"signer_kwargs":
{"sign_api_base": ...}}``); the TikTok page and webcast API are the process-wide
``TikTokLive.client.web.web_settings.WebDefaults.tiktok_app_url`` / ``tiktok_webcast_url``,
set before each connection (to the library's defaults when not given); the push server is
whatever the sign server answers.

Each connection asks the sign server once; with a :class:`~ingest.signbucket.SignBucket` it
first takes a token from the bucket every worker shares, waiting (``rate limited``) while it is
empty, so a fleet stays under the sign server's limit instead of collecting 429s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from broker.models import Platform
from ingest.base import AdapterFatal, AdapterState, AdapterStatus, Emit, IngestItem
from ingest.sharing import worker_redis
from ingest.signbucket import SignBucket
from ingest.tiktok_map import (
    LikeWindow,
    delete_items,
    gift_event,
    live_ended,
    map_comment,
    map_emote_chat,
    question_event,
    social_event,
    subscribe_event,
    viewers_event,
)

try:
    from TikTokLive import TikTokLiveClient
    from TikTokLive.client.errors import (
        AgeRestrictedError,
        PremiumEndpointError,
        SignatureRateLimitError,
        UserNotFoundError,
        UserOfflineError,
    )
    from TikTokLive.client.web.web_settings import WebDefaults
    from TikTokLive.events import (
        CommentEvent,
        ConnectEvent,
        ControlEvent,
        EmoteChatEvent,
        GiftEvent,
        ImDeleteEvent,
        LikeEvent,
        QuestionNewEvent,
        RoomUserSeqEvent,
        SocialEvent,
        SubNotifyEvent,
    )

    LIBRARY_APP_URL = WebDefaults.tiktok_app_url
    LIBRARY_WEBCAST_URL = WebDefaults.tiktok_webcast_url
except ImportError:  # pragma: no cover - depends on the install
    TikTokLiveClient = None

__all__ = ["TikTokAdapter"]

log = logging.getLogger("vstudio.ingest.tiktok")

KNOWN_USERS_LIMIT = 50_000


class TikTokAdapter:
    """One TikTok user's LIVE room: comments, likes, gifts, follows, shares, subscriptions."""

    platform = Platform.TIKTOK

    def __init__(
        self,
        *,
        user: str,
        sign_url: str | None = None,
        sign_api_key: str | None = None,
        app_url: str | None = None,
        webcast_url: str | None = None,
        room_id: int | None = None,
        like_window: float = 2.0,
        sign_bucket: SignBucket | None = None,
    ) -> None:
        if TikTokLiveClient is None:
            raise RuntimeError(
                "the TikTok adapter needs TikTokLive: pip install 'vstudio-realtime[tiktok]'"
            )
        handle = user.strip().removeprefix("@")
        if not handle:
            raise ValueError("give the TikTok user as @name")
        self.user = handle
        self.target = f"@{handle}"
        self.status = AdapterStatus()
        self.sign_url = sign_url
        self.sign_api_key = sign_api_key
        self.app_url = app_url
        self.webcast_url = webcast_url
        self.room_id = room_id
        self.known_users: dict[int, str] = {}
        self.like_window = like_window
        self.likes = LikeWindow()
        self._ended = False
        self.sign_bucket = sign_bucket

    async def run(self, emit: Emit) -> None:
        """Connect through TikTokLive and read until the LIVE ends (AdapterFatal) or drops."""
        await self._take_sign_token(emit)
        WebDefaults.tiktok_app_url = (self.app_url or LIBRARY_APP_URL).rstrip("/")
        WebDefaults.tiktok_webcast_url = (self.webcast_url or LIBRARY_WEBCAST_URL).rstrip("/")
        signer: dict[str, Any] = {}
        if self.sign_url:
            signer["sign_api_base"] = self.sign_url.rstrip("/")
        if self.sign_api_key:
            signer["sign_api_key"] = self.sign_api_key
        client = TikTokLiveClient(unique_id=self.user, web_kwargs={"signer_kwargs": signer})
        self._listen(client, emit)
        self.status.state = AdapterState.CONNECTING
        flusher = asyncio.create_task(self._flush_likes(emit))
        try:
            task = await client.start(room_id=self.room_id, fetch_live_check=True)
            await task
        except UserOfflineError as exc:
            raise AdapterFatal(f"TikTok user {self.target} is not LIVE now") from exc
        except UserNotFoundError as exc:
            raise AdapterFatal(
                f"TikTok user {self.target} does not exist or has never gone LIVE"
            ) from exc
        except AgeRestrictedError as exc:
            raise AdapterFatal(
                f"the LIVE of {self.target} is age-restricted; it needs a logged-in session"
            ) from exc
        except PremiumEndpointError as exc:
            raise AdapterFatal(
                f"the sign server refused this request ({exc}); check the sign API key"
            ) from exc
        except SignatureRateLimitError as exc:
            self.status.state = AdapterState.RATE_LIMITED
            self.status.detail = f"sign server: retry after {exc.retry_after} s"
            if self.sign_bucket is not None and self.sign_bucket.redis is not None:
                await self.sign_bucket.drain(self.sign_api_key, float(exc.retry_after))
            raise
        finally:
            flusher.cancel()
            self._emit_likes(emit)
            await asyncio.shield(self._close(client))
        if self._ended:
            raise AdapterFatal(f"the TikTok LIVE of {self.target} has ended")
        self.status.state = AdapterState.DISCONNECTED

    async def _take_sign_token(self, emit: Emit) -> None:
        """Take the sign server token of this connection from the bucket all workers share."""
        bucket = self.sign_bucket
        if bucket is None:
            return
        if bucket.redis is None:
            bucket.redis = worker_redis(emit)
            if bucket.redis is None:
                return  # run outside a worker: nothing to share the bucket with

        def waiting(seconds: float) -> None:
            self.status.state = AdapterState.RATE_LIMITED
            self.status.detail = (
                f"sign server: next request in {seconds:.1f} s "
                f"({bucket.per_minute:g}/min shared by every worker)"
            )

        if await bucket.take(self.sign_api_key, waiting) > 0:
            self.status.state = AdapterState.CONNECTING
            self.status.detail = ""

    async def _flush_likes(self, emit: Emit) -> None:
        """One ``like`` event per window however fast the room taps."""
        while True:
            await asyncio.sleep(self.like_window)
            self._emit_likes(emit)

    def _emit_likes(self, emit: Emit) -> None:
        event = self.likes.flush()
        if event is not None:
            emit(event)

    async def _close(self, client: Any) -> None:
        try:
            await client.disconnect()
        finally:
            await client.web.close()

    def _listen(self, client: Any, emit: Emit) -> None:
        """Register one handler per webcast message type; each maps and emits."""

        def forward(item: IngestItem | None) -> None:
            if item is not None:
                emit(item)

        def on_connect(event: Any) -> None:
            self.status.state = AdapterState.CONNECTED
            self.status.detail = f"room {event.room_id}"
            log.info("tiktok %s connected to room %s", self.target, event.room_id)

        def on_comment(event: Any) -> None:
            message = map_comment(event)
            if event.user is not None and event.user.id:
                if len(self.known_users) >= KNOWN_USERS_LIMIT:
                    self.known_users.clear()
                self.known_users[int(event.user.id)] = message.username
            emit(message)

        def on_delete(event: Any) -> None:
            for item in delete_items(event, self.known_users):
                emit(item)

        def on_control(event: Any) -> None:
            if live_ended(event):
                self._ended = True
                self.status.state = AdapterState.ENDED

        handlers: list[tuple[Any, Callable[[Any], None]]] = [
            (ConnectEvent, on_connect),
            (CommentEvent, on_comment),
            (EmoteChatEvent, lambda event: forward(map_emote_chat(event))),
            (LikeEvent, self.likes.add),
            (QuestionNewEvent, lambda event: forward(question_event(event))),
            (RoomUserSeqEvent, lambda event: forward(viewers_event(event))),
            (GiftEvent, lambda event: forward(gift_event(event))),
            (SocialEvent, lambda event: forward(social_event(event))),
            (SubNotifyEvent, lambda event: forward(subscribe_event(event))),
            (ImDeleteEvent, on_delete),
            (ControlEvent, on_control),
        ]
        for event_type, handler in handlers:
            client.add_listener(event_type, _skipping_malformed(event_type.__name__, handler))


def _skipping_malformed(name: str, handler: Callable[[Any], None]) -> Callable[[Any], None]:
    """A handler that logs and skips an event it cannot map instead of ending the connection
    (an exception in a TikTokLive listener would surface inside its read loop)."""

    def guarded(event: Any) -> None:
        try:
            handler(event)
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("tiktok: skipped a %s that could not be mapped: %s", name, exc)

    return guarded
