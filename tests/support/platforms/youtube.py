"""A local YouTube Data API v3: ``videos``, ``channels``, ``search``, ``liveChat/messages``.

It answers like Google does (JSON bodies, ``nextPageToken``, ``pollingIntervalMillis``, the
``{"error": {"code", "message", "errors": [{"reason"}]}}`` error shape) and checks what a real
server checks: the API key or bearer token, the ids, and that the client follows the page token
it was given. Every request is recorded with its time so tests can check polling intervals.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.loopback import serve_app

__all__ = ["FakeYouTube", "Recorded", "chat_item", "error_body"]


def error_body(code: int, reason: str, message: str, domain: str = "youtube.api") -> dict[str, Any]:
    """Google's error body."""
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
        }
    }


def chat_item(
    item_id: str,
    kind: str = "textMessageEvent",
    *,
    text: str = "hello",
    author: str = "Fan",
    channel: str = "UCfan",
    published: str = "2026-01-02T03:04:05.678+00:00",
    moderator: bool = False,
    owner: bool = False,
    sponsor: bool = False,
    verified: bool = False,
    **details: Any,
) -> dict[str, Any]:
    """A ``liveChatMessage`` resource as the API returns it."""
    snippet: dict[str, Any] = {
        "type": kind,
        "liveChatId": "CHAT",
        "authorChannelId": channel,
        "publishedAt": published,
        "hasDisplayContent": True,
        "displayMessage": text,
    }
    if kind == "textMessageEvent":
        snippet["textMessageDetails"] = {"messageText": text}
    snippet.update(details)
    return {
        "kind": "youtube#liveChatMessage",
        "etag": f"etag-{item_id}",
        "id": item_id,
        "snippet": snippet,
        "authorDetails": {
            "channelId": channel,
            "channelUrl": f"http://www.youtube.com/channel/{channel}",
            "displayName": author,
            "profileImageUrl": "https://yt3.ggpht.com/x.jpg",
            "isVerified": verified,
            "isChatOwner": owner,
            "isChatSponsor": sponsor,
            "isChatModerator": moderator,
        },
    }


@dataclass
class Recorded:
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class FakeYouTube:
    """The API for one live video. ``pages`` are served in order; an ``(status, body)`` entry is
    an error answer served once at that point instead of a page."""

    video_id: str = "Live1234567"
    channel_id: str = "UCartist"
    handle: str = "@artist"
    chat_id: str = "CHAT1"
    api_key: str | None = "KEY"
    oauth_token: str | None = None
    pages: list[Any] = field(default_factory=list)
    interval_ms: int = 50
    offline_after_pages: bool = False
    live: bool = True
    requests: list[Recorded] = field(default_factory=list)
    _served: int = 0
    url: str = ""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeYouTube]:
        app = web.Application()
        app.router.add_get("/youtube/v3/videos", self._videos)
        app.router.add_get("/youtube/v3/search", self._search)
        app.router.add_get("/youtube/v3/channels", self._channels)
        app.router.add_get("/youtube/v3/liveChat/messages", self._messages)
        async with serve_app(app) as base:
            self.url = f"{base}/youtube/v3"
            yield self

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(path)]

    def _record(self, request: web.Request) -> web.Response | None:
        self.requests.append(
            Recorded(request.path, dict(request.query), dict(request.headers), time.monotonic())
        )
        key = request.query.get("key")
        bearer = request.headers.get("Authorization", "")
        if self.oauth_token and bearer == f"Bearer {self.oauth_token}":
            return None
        if self.api_key and key == self.api_key:
            return None
        if bearer:
            return web.json_response(
                error_body(401, "authError", "Invalid Credentials", "global"), status=401
            )
        return web.json_response(
            error_body(
                400, "keyInvalid", "API key not valid. Please pass a valid API key.", "usageLimits"
            ),
            status=400,
        )

    async def _videos(self, request: web.Request) -> web.Response:
        if (denied := self._record(request)) is not None:
            return denied
        if request.query.get("part") != "liveStreamingDetails":
            return web.json_response(error_body(400, "invalidPart", "bad part"), status=400)
        items = []
        if request.query.get("id") == self.video_id:
            details: dict[str, Any] = {"actualStartTime": "2026-01-02T03:00:00Z"}
            if self.live:
                details["activeLiveChatId"] = self.chat_id
            else:
                details["actualEndTime"] = "2026-01-02T04:00:00Z"
            items.append(
                {"kind": "youtube#video", "id": self.video_id, "liveStreamingDetails": details}
            )
        return web.json_response({"kind": "youtube#videoListResponse", "items": items})

    async def _channels(self, request: web.Request) -> web.Response:
        if (denied := self._record(request)) is not None:
            return denied
        found = request.query.get("forHandle", "").casefold() == self.handle.casefold()
        items = [{"kind": "youtube#channel", "id": self.channel_id}] if found else []
        return web.json_response({"kind": "youtube#channelListResponse", "items": items})

    async def _search(self, request: web.Request) -> web.Response:
        if (denied := self._record(request)) is not None:
            return denied
        items = []
        if (
            request.query.get("channelId") == self.channel_id
            and request.query.get("eventType") == "live"
            and self.live
        ):
            items.append(
                {
                    "kind": "youtube#searchResult",
                    "id": {"kind": "youtube#video", "videoId": self.video_id},
                }
            )
        return web.json_response({"kind": "youtube#searchListResponse", "items": items})

    async def _messages(self, request: web.Request) -> web.Response:
        if (denied := self._record(request)) is not None:
            return denied
        if request.query.get("liveChatId") != self.chat_id:
            return web.json_response(
                error_body(
                    404, "liveChatNotFound", "The live chat cannot be found.", "youtube.liveChat"
                ),
                status=404,
            )
        expected = f"page{self._served}" if self._served else None
        if request.query.get("pageToken") != expected:
            return web.json_response(
                error_body(
                    400,
                    "pageTokenInvalid",
                    f"expected pageToken {expected!r}, got {request.query.get('pageToken')!r}",
                    "youtube.liveChat",
                ),
                status=400,
            )
        if self._served < len(self.pages):
            entry = self.pages[self._served]
            if isinstance(entry, tuple):
                status, body = entry
                self.pages.pop(self._served)  # an error is answered once
                return web.json_response(body, status=status)
            self._served += 1
            body = {
                "kind": "youtube#liveChatMessageListResponse",
                "nextPageToken": f"page{self._served}",
                "pollingIntervalMillis": self.interval_ms,
                "pageInfo": {"totalResults": len(entry), "resultsPerPage": len(entry)},
                "items": entry,
            }
            return web.json_response(body)
        body = {
            "kind": "youtube#liveChatMessageListResponse",
            "nextPageToken": expected,
            "pollingIntervalMillis": self.interval_ms,
            "items": [],
        }
        if self.offline_after_pages:
            body["offlineAt"] = "2026-01-02T04:00:00Z"
        return web.json_response(body)
