"""YouTube live chat through the official Data API v3, polled over HTTP with aiohttp.

``videos.list(part=liveStreamingDetails)`` gives the broadcast's ``activeLiveChatId`` (a
channel is first resolved to its live video with ``search.list(eventType=live)``), then
``liveChatMessages.list`` is polled, waiting ``pollingIntervalMillis`` between calls and
following ``nextPageToken``. The chat id and page token live on the adapter, so a reconnect
resumes where the last page ended instead of re-reading the backlog. Mapping is in
:mod:`ingest.youtube_map`.

One adapter reads one live chat. With a :class:`~ingest.quota.QuotaLedger` every call is charged
to the API key's daily quota in Redis first, shared by every worker using the key; when the
quota is spent the adapter waits for the reset (``backing off``) instead of calling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NoReturn

import aiohttp

from broker.models import Platform
from ingest.base import AdapterFatal, AdapterState, AdapterStatus, Emit, check_cancelled
from ingest.quota import QuotaLedger, cost_of, resets_at, spent_detail
from ingest.sharing import worker_redis
from ingest.youtube_map import (
    YouTubeApiError,
    channel_id_of,
    chat_ended,
    classify_error,
    live_chat_id_of,
    live_video_id_of,
    map_chat_item,
    video_id_from,
)

__all__ = ["YouTubeAdapter"]

log = logging.getLogger("vstudio.ingest.youtube")

DEFAULT_API_URL = "https://www.googleapis.com/youtube/v3"


class YouTubeAdapter:
    """One YouTube broadcast's live chat: a video (id or URL), or a channel (``UC...`` id or
    ``@handle``) whose live broadcast is read."""

    platform = Platform.YOUTUBE

    def __init__(
        self,
        *,
        video_id: str | None = None,
        channel_id: str | None = None,
        api_url: str = DEFAULT_API_URL,
        api_key: str | None = None,
        oauth_token: str | None = None,
        max_results: int = 2000,
        request_timeout: float = 20.0,
        quota: QuotaLedger | None = None,
    ) -> None:
        if bool(video_id) == bool(channel_id):
            raise ValueError("give exactly one of a video id (--video) or a channel id (--channel)")
        if not api_key and not oauth_token:
            raise ValueError(
                "the YouTube Data API needs an API key (--api-key, VSTUDIO_YOUTUBE_API_KEY) or "
                "an OAuth token (--oauth-token, VSTUDIO_YOUTUBE_OAUTH_TOKEN)"
            )
        self.video_id = video_id_from(video_id) if video_id else None
        self.channel_id = channel_id.strip() if channel_id else None
        self.target = f"video:{self.video_id}" if video_id else f"channel:{self.channel_id}"
        self.status = AdapterStatus()
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.oauth_token = oauth_token
        self.max_results = max_results
        self.request_timeout = request_timeout
        self.live_chat_id: str | None = None
        self.page_token: str | None = None
        self.polls = 0
        self.quota = quota if api_key else None
        """Charged before each call; OAuth calls spend a project's quota we cannot name."""

    async def run(self, emit: Emit) -> None:
        """Poll the chat until it ends (AdapterFatal) or the connection fails (raise)."""
        headers = {"Accept": "application/json"}
        if self.oauth_token:
            headers["Authorization"] = f"Bearer {self.oauth_token}"
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        if self.quota is not None and self.quota.redis is None:
            self.quota.redis = worker_redis(emit)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            if self.live_chat_id is None:
                self.live_chat_id = await self._resolve_chat(http)
            while True:
                page = await self._get(
                    http,
                    "liveChat/messages",
                    {
                        "liveChatId": self.live_chat_id,
                        "part": "snippet,authorDetails",
                        "maxResults": str(self.max_results),
                        **({"pageToken": self.page_token} if self.page_token else {}),
                    },
                )
                self.polls += 1
                for item in page.get("items") or []:
                    try:
                        values = map_chat_item(item)
                    except (ValueError, TypeError, AttributeError) as exc:
                        log.warning("youtube: skipped an item the API sent malformed: %s", exc)
                        continue
                    for value in values:
                        emit(value)
                self.page_token = page.get("nextPageToken") or self.page_token
                if chat_ended(page):
                    raise AdapterFatal(
                        f"YouTube live chat of {self.target} went offline at "
                        f"{page['offlineAt']}; the broadcast is over"
                    )
                interval = max(int(page.get("pollingIntervalMillis") or 1000), 0) / 1000
                self.status.state = AdapterState.CONNECTED
                self.status.detail = f"chat {self.live_chat_id}, polled every {interval:g} s"
                await asyncio.sleep(interval)

    async def _resolve_chat(self, http: aiohttp.ClientSession) -> str:
        """The live chat id of the video, resolving a channel to its live video first."""
        self.status.state = AdapterState.RESOLVING
        video_id = self.video_id
        if video_id is None:
            channel = self.channel_id
            assert channel is not None
            if channel.startswith("@"):
                handle = channel
                channels = await self._get(http, "channels", {"part": "id", "forHandle": handle})
                channel = self._fatal_unless_ok(lambda: channel_id_of(handle, channels))
            found = await self._get(
                http,
                "search",
                {
                    "part": "id",
                    "channelId": channel,
                    "eventType": "live",
                    "type": "video",
                    "maxResults": "1",
                },
            )
            video_id = self._fatal_unless_ok(lambda: live_video_id_of(channel, found))
        videos = await self._get(http, "videos", {"part": "liveStreamingDetails", "id": video_id})
        chat_id = self._fatal_unless_ok(lambda: live_chat_id_of(video_id, videos))
        log.info("youtube video %s has live chat %s", video_id, chat_id)
        return chat_id

    def _fatal_unless_ok(self, read: Callable[[], str]) -> str:
        try:
            return read()
        except YouTubeApiError as exc:
            raise AdapterFatal(f"YouTube: {exc.message}") from exc

    async def _get(
        self, http: aiohttp.ClientSession, resource: str, params: dict[str, str]
    ) -> dict[str, Any]:
        """GET one API resource, charged to the key's quota first; raise AdapterFatal for
        errors a retry cannot fix."""
        if self.api_key:
            params = {**params, "key": self.api_key}
        while True:
            await self._charge(resource)
            async with http.get(f"{self.api_url}/{resource}", params=params) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                if response.status == 200 and isinstance(body, dict):
                    return body
                if response.status == 200:
                    raise ConnectionError(f"YouTube {resource}: the answer is not a JSON object")
            error = classify_error(response.status, body)
            if error.reason == "quotaExceeded" and self._accounting():
                assert self.quota is not None and self.api_key is not None
                log.warning("youtube: Google says the quota of key %s is spent", self.api_key[-4:])
                await self.quota.spend(self.api_key)  # every worker on the key waits now
                continue
            self._raise_for(error, resource)

    def _raise_for(self, error: YouTubeApiError, resource: str) -> NoReturn:
        if error.ended:
            raise AdapterFatal(f"YouTube live chat of {self.target}: {error.message}") from error
        if not error.retryable:
            raise AdapterFatal(f"YouTube {resource} failed ({error.reason}): {error.message}")
        self.status.state = AdapterState.BACKING_OFF
        self.status.detail = str(error)
        raise error

    def _accounting(self) -> bool:
        return self.quota is not None and self.quota.redis is not None and bool(self.api_key)

    async def _charge(self, resource: str) -> None:
        """Charge the call to the key's quota; while it would not fit, wait for the reset."""
        if not self._accounting():
            return
        assert self.quota is not None and self.api_key is not None
        before = (self.status.state, self.status.detail)
        waited = False
        while not (charge := await self.quota.charge(self.api_key, cost_of(resource))).allowed:
            check_cancelled()
            now = self.quota.clock()
            if not waited:
                log.warning(
                    "youtube %s: %s (%d of %d units used)",
                    self.target,
                    spent_detail(self.api_key, now),
                    charge.used,
                    charge.limit,
                )
            waited = True
            self.status.state = AdapterState.BACKING_OFF
            self.status.detail = spent_detail(self.api_key, now)
            until_reset = (resets_at(now) - now).total_seconds()
            await asyncio.sleep(max(0.01, min(self.quota.recheck, until_reset)))
        if waited:
            self.status.state, self.status.detail = before
