"""``POST /v1/vstudio/announcements``: an operator's notice to every session, or a session's.

Who may announce: to one session (``sessionId``), its artist and producers, and operators; to
every session (no ``sessionId``), operators only. An operator is a caller whose token carries
``"operator": true`` (``vstudio token mint --operator``; an auth service adds the claim for its
admins). A session announcement is a session event (stream id, history, replay); a global one
goes out on ``vstudio:global:announcements``, which every process writes to its clients.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field, ValidationError

from broker.models import Announcement, ErrorCode, MessageType, ProtocolError, Role, WireModel
from server.bridge import publish_global
from server.context import CONTEXT
from server.http.errors import json_response, read_model
from server.identity.tickets import highest_role

__all__ = ["AnnouncementRequest", "routes"]

routes = web.RouteTableDef()


class AnnouncementRequest(WireModel):
    """The body: the text, and the session it is for (none: every session, operators only)."""

    text: str = Field(min_length=1, max_length=500)
    session_id: str | None = Field(default=None, min_length=1, max_length=100)


@routes.post("/v1/vstudio/announcements")
async def announce(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    who = await ctx.identify(request)
    body = await read_model(request, AnnouncementRequest)
    try:
        notice = Announcement(text=body.text, session_id=body.session_id, by=who.username)
    except ValidationError as exc:  # blank-looking text: a 400, not a 500 (issue 13)
        message = exc.errors()[0]["msg"]
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"text: {message}") from exc
    if body.session_id is None:
        if not who.operator:
            raise ProtocolError(
                ErrorCode.FORBIDDEN, "only operators announce to every session; give sessionId"
            )
        processes = await publish_global(ctx.bus, notice)
        return json_response({"announcement": notice.wire(), "processes": processes})
    session = await ctx.sessions.get(body.session_id)
    if not who.operator and highest_role(session, who) not in (Role.ARTIST, Role.PRODUCER):
        raise ProtocolError(
            ErrorCode.FORBIDDEN, "only the session's artist and producers (or operators) announce"
        )
    event_id = await ctx.bus.publish(session.id, "events", MessageType.ANNOUNCEMENT, notice.wire())
    return json_response({"announcement": notice.wire(), "id": event_id})
