"""A session's chat sources over REST: what the worker fleet reads for it (issue 15).

``GET|POST /v1/vstudio/sessions/{sessionId}/sources`` and ``DELETE .../sources/{sourceId}``
(``sourceId`` is ``platform:target``, e.g. ``twitch:shroud``). The session's artist, its
producers and operators (token claim ``operator``) read and change them: the declarations name
the credentials the workers use and, with ``?health=1``, the workers that read them, which is
the staff's business, not the fans'. A body that is not a source is 400 (4006) like every route;
a well-formed source whose target the platform would not accept (``twitch`` + ``Not A
Channel!``) is 422 (4006) with the rule it breaks. Declaring on an ended session is 409 (4002);
withdrawing from one is allowed (it only tidies up). When a session ends, its declarations stay
in Redis but are no longer wanted, so the workers release them on their next reconcile.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from broker.fleet_view import as_wanted, fleet_view, read_fleet
from broker.models import ErrorCode, ProtocolError, Session, SessionStatus
from broker.sources import SourceSpec, SourceStore
from server.context import CONTEXT, ServerContext
from server.http.errors import json_error, json_response, read_model
from server.identity.auth import Identity

__all__ = ["BASE", "routes"]

BASE = "/v1/vstudio/sessions/{sessionId}/sources"

routes = web.RouteTableDef()


async def _staff_session(request: web.Request) -> tuple[ServerContext, Session]:
    """The session, for its artist, producers and operators only (ended sessions too)."""
    ctx = request.app[CONTEXT]
    who: Identity = await ctx.identify(request)
    session = await ctx.sessions.get(request.match_info["sessionId"])
    staff = who.user_id == session.artist_id or who.user_id in session.producer_ids
    if not ((staff and not who.guest) or who.operator):
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            "only the session's artist and producers (or operators) see and change its sources",
        )
    return ctx, session


def _store(ctx: ServerContext) -> SourceStore:
    return SourceStore(ctx.bus.redis, ctx.broker.fleet)


@routes.get(BASE)
async def list_sources(request: web.Request) -> web.Response:
    """The session's sources; with ``?health=1`` each one's owners and state as well."""
    ctx, session = await _staff_session(request)
    specs = await _store(ctx).of_session(session.id)
    sources = [_wire(spec) for spec in specs]
    if request.query.get("health", "") not in ("", "0", "false"):
        raw = await read_fleet(ctx.bus.redis, ctx.broker.fleet, as_wanted(session.id, specs))
        rows = {row.id: row for row in fleet_view(raw).sources}
        wanted = session.status == SessionStatus.LIVE
        for item in sources:
            row = rows[item["id"]]
            item["owners"] = row.owners
            item["state"] = row.state if (row.owners or wanted) else "idle"
            item["msgPerS"] = row.msg_per_s
            item["lagMs"] = row.lag_ms
            item["lastError"] = row.last_error
    return json_response({"sessionId": session.id, "sources": sources})


@routes.post(BASE)
async def add_source(request: web.Request) -> web.Response:
    """Declare a source (201), or replace its credentials and redundancy (200)."""
    ctx, session = await _staff_session(request)
    if session.status == SessionStatus.ENDED:
        raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {session.id} has ended")
    try:
        spec = await read_model(request, SourceSpec)
    except ProtocolError as exc:
        cause = exc.__cause__
        if isinstance(cause, ValidationError) and _is_bad_target(cause):
            message = str(cause.errors()[0]["msg"]).removeprefix("Value error, ")
            return json_error(422, int(ErrorCode.INVALID_MESSAGE), message)
        raise
    created = await _store(ctx).add(session.id, spec)
    return json_response(
        {"sessionId": session.id, "created": created, "source": _wire(spec)},
        status=201 if created else 200,
    )


@routes.delete(BASE + "/{sourceId}")
async def remove_source(request: web.Request) -> web.Response:
    """Withdraw a declaration; 404 when the session does not have it."""
    ctx, session = await _staff_session(request)
    source_id = request.match_info["sourceId"]
    if not await _store(ctx).remove(session.id, source_id):
        return json_error(
            404,
            404,
            f"session {session.id} has no source {source_id!r}",
        )
    return json_response({"sessionId": session.id, "removed": source_id})


def _is_bad_target(error: ValidationError) -> bool:
    """The body had every field right but the target breaks the platform's rule (the spec's
    model validator, which reports at the model itself: an empty location)."""
    first = error.errors()[0]
    return first["type"] == "value_error" and not first["loc"]


def _wire(spec: SourceSpec) -> dict[str, Any]:
    return {"id": spec.id, **spec.model_dump(mode="json")}
