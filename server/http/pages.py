"""The fans' web page: ``/`` (live sessions), ``/s/{sessionId}``, the OBS overlays
(``/overlay/{sessionId}/chat|poll|reactions``) and their static files.

The page is plain HTML (``server/web``), CSS and JavaScript modules (``server/web/static``,
the only folder served as files) with no build step. Two small public JSON routes give the
page what it needs before anyone signs in (a session's title, stream and whether guests may
join; the list of live sessions): only public fields, never tokens or ledgers. The HTML
carries a Content-Security-Policy that allows scripts, styles and connections from this
server only and frames from the stream players alone, so a message that slips past escaping
still cannot load or run anything.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiohttp import web

from broker.models import Session, SessionStatus
from server.context import CONTEXT
from server.interactions.sessions import UnreadableSession

__all__ = ["CONTENT_SECURITY_POLICY", "WEB_DIR", "public_session", "routes"]

WEB_DIR = Path(__file__).parent.parent / "web"

STREAM_FRAMES = (
    "https://player.twitch.tv",
    "https://www.youtube-nocookie.com",
    "https://www.youtube.com",
    "https://www.tiktok.com",
)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: data:",  # emote images come from the platforms' CDNs
        "connect-src 'self'",
        f"frame-src {' '.join(STREAM_FRAMES)}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
)

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Cache-Control": "no-cache",
}

PUBLIC_FIELDS = (
    "id",
    "artistId",
    "title",
    "streamUrl",
    "streamPlatform",
    "status",
    "scheduledStart",
    "actualStart",
    "endedAt",
    "chatEnabled",
    "reactionsEnabled",
    "allowGuests",
)

routes = web.RouteTableDef()


def public_session(session: Session) -> dict[str, Any]:
    """What anyone may know about a session before signing in."""
    wire = session.wire()
    return {name: wire[name] for name in PUBLIC_FIELDS if name in wire}


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / name, headers=PAGE_HEADERS)


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    """The front page: live sessions, each linking to its page."""
    return _page("index.html")


@routes.get("/s/{sessionId}")
async def session_page(request: web.Request) -> web.StreamResponse:
    """One session's page; an unknown id is reported by the page itself, in words."""
    return _page("session.html")


# issue 18: OBS browser-source overlays
OVERLAY_KINDS = ("chat", "poll", "reactions")


@routes.get(r"/overlay/{sessionId}/{kind:(chat|poll|reactions)}")
async def overlay_page(request: web.Request) -> web.StreamResponse:
    """A transparent page for an OBS browser source; it reads the session as a guest would,
    so it shows what the session shows anyone (nothing when guests are not allowed)."""
    return _page("overlay.html")


LISTING_TTL = 2.0
"""Seconds one process reuses the front page's listing: anyone may ask for it, and building it
reads every session record, so a burst of visitors costs one scan, not one each."""

_listings: dict[SessionStatus, tuple[float, list[dict[str, Any]]]] = {}


@routes.get("/web/sessions")
async def list_public(request: web.Request) -> web.Response:
    """Sessions for the front page, newest first; ``?status=live`` by default."""
    raw = request.query.get("status", SessionStatus.LIVE.value)
    try:
        status = SessionStatus(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in SessionStatus)
        return web.json_response(
            {"code": 4006, "message": f"status must be one of {allowed}"}, status=400
        )
    cached = _listings.get(status)
    if cached is None or time.monotonic() - cached[0] > LISTING_TTL:
        sessions = await request.app[CONTEXT].sessions.list(status=status, limit=50)
        cached = (time.monotonic(), [public_session(s) for s in sessions])
        _listings[status] = cached
    return web.json_response({"sessions": cached[1]})


@routes.get("/web/sessions/{sessionId}")
async def show_public(request: web.Request) -> web.Response:
    """One session's public fields, for the page before sign-in."""
    try:
        session = await request.app[CONTEXT].sessions.find(request.match_info["sessionId"])
    except UnreadableSession:
        session = None
    if session is None:
        return web.json_response({"code": 4001, "message": "session not found"}, status=404)
    return web.json_response(public_session(session))


@routes.get("/favicon.ico")
async def favicon(request: web.Request) -> web.StreamResponse:
    """The tab icon, where browsers and bookmark tools look for it first (an SVG)."""
    return web.FileResponse(
        WEB_DIR / "static" / "favicon.svg",
        headers={"Content-Type": "image/svg+xml", "Cache-Control": "max-age=86400"},
    )


routes.static("/static", WEB_DIR / "static", append_version=False)
