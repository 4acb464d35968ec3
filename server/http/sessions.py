"""Sessions over REST: create, read, list, start, end, update.

Ending and updating perform ``session.end`` / ``session.update`` through
:func:`server.interactions.registry.perform`, so the WebSocket and REST paths share one rule set.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field, field_validator

from broker.models import (
    Empty,
    ErrorCode,
    MessageType,
    ProtocolError,
    RequiredTokens,
    Role,
    Session,
    SessionStatus,
    SessionUpdate,
    WireModel,
    token_requirements,
)
from server.context import CONTEXT
from server.http.errors import json_response, read_model
from server.http.pages import public_session
from server.identity.auth import Identity
from server.identity.participant import Participant
from server.identity.tickets import highest_role
from server.interactions.registry import Actor
from server.interactions.sessions import new_session_id

__all__ = ["SessionCreate", "routes"]

routes = web.RouteTableDef()


MAX_REQUIRED_TOKENS = 50


class SessionCreate(WireModel):
    """``POST /v1/vstudio/sessions``: the artist is the caller."""

    title: str = Field(min_length=1, max_length=200)
    stream_url: str | None = Field(default=None, max_length=500)
    stream_platform: Literal["twitch", "youtube", "tiktok", "other"] | None = None
    scheduled_start: int | None = Field(default=None, ge=0)
    chat_enabled: bool = True
    reactions_enabled: bool = True
    allow_guests: bool = False
    producer_ids: list[str] = Field(default_factory=list, max_length=50)
    required_tokens: RequiredTokens | None = Field(
        default=None, description="{contractAddress, minBalance}, or a list of them"
    )

    @field_validator("required_tokens")
    @classmethod
    def _few_tokens(cls, required: RequiredTokens | None) -> RequiredTokens | None:
        if len(token_requirements(required)) > MAX_REQUIRED_TOKENS:
            raise ValueError(f"at most {MAX_REQUIRED_TOKENS} token requirements")
        return required


@routes.post("/v1/vstudio/sessions")
async def create_session(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    who = await ctx.identify(request)
    if who.role != Role.ARTIST or who.guest:
        raise ProtocolError(ErrorCode.FORBIDDEN, "only artists create sessions")
    body = await read_model(request, SessionCreate)
    cap = ctx.settings.max_sessions_per_artist
    open_ = await ctx.sessions.count_open(who.user_id)
    if open_ >= cap:  # checked, then created: two creates at once may pass it by one
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            f"you have {open_} sessions that have not ended; the limit is {cap} sessions "
            "(end one first)",
        )
    session = Session(id=new_session_id(), artist_id=who.user_id, **body.model_dump())
    created = await ctx.sessions.create(session)
    return json_response(created.wire(), status=201)


@routes.get("/v1/vstudio/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    status_text = request.query.get("status")
    try:
        status = SessionStatus(status_text) if status_text else None
    except ValueError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "status must be scheduled, live or ended"
        ) from exc
    try:
        limit = min(int(request.query.get("limit", "100")), 500)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "limit must be a number") from exc
    who = await _caller(request)
    found = await ctx.sessions.list(
        artist_id=request.query.get("artistId") or None, status=status, limit=limit
    )
    if who is None:  # fans before signing in: what the session page would show them
        shown = [public_session(s) for s in found if _is_public(s)]
        return json_response({"sessions": shown})
    return json_response({"sessions": [session.wire() for session in found]})


def _is_public(session: Session) -> bool:
    """Live sessions, and scheduled ones that let guests in, are listed to anyone."""
    if session.status == SessionStatus.LIVE:
        return True
    return session.status == SessionStatus.SCHEDULED and session.allow_guests


async def _caller(request: web.Request) -> Identity | None:
    """The caller, or ``None`` without an Authorization header (a token sent is checked)."""
    if "Authorization" not in request.headers:
        return None
    return await request.app[CONTEXT].identify(request)


@routes.get("/v1/vstudio/sessions/{sessionId}")
async def get_session(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    session = await ctx.sessions.get(request.match_info["sessionId"])
    who = await _caller(request)
    body = session.wire() if who is not None else public_session(session)
    body["viewerCount"] = await ctx.presence.count(session.id)
    return json_response(body)


@routes.post("/v1/vstudio/sessions/{sessionId}/start")
async def start_session(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    who = await ctx.identify(request)
    session = await ctx.sessions.get(request.match_info["sessionId"])
    if who.user_id != session.artist_id or who.guest:
        raise ProtocolError(ErrorCode.FORBIDDEN, "only the session's artist starts it")
    started = await ctx.sessions.start(session.id)
    return json_response(started.wire())


async def _perform(request: web.Request, kind: MessageType, payload: WireModel) -> web.Response:
    ctx = request.app[CONTEXT]
    who = await ctx.identify(request)
    session = await ctx.sessions.get(request.match_info["sessionId"])
    actor = Actor(
        Participant(session.id, who.user_id, who.username, highest_role(session, who)),
        transport="rest",
        request_id=request.headers.get("Idempotency-Key"),
    )
    result = await ctx.actions.perform(ctx.services, actor, kind, payload)
    return json_response(result if result is not None else {"ok": True})


@routes.post("/v1/vstudio/sessions/{sessionId}/end")
async def end_session(request: web.Request) -> web.Response:
    return await _perform(request, MessageType.SESSION_END, await read_model(request, Empty))


@routes.patch("/v1/vstudio/sessions/{sessionId}")
async def update_session(request: web.Request) -> web.Response:
    return await _perform(
        request, MessageType.SESSION_UPDATE, await read_model(request, SessionUpdate)
    )
