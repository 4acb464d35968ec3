"""Read endpoints of a session's interactions: its polls with their counts, its tip ledger."""

from __future__ import annotations

from aiohttp import web

from broker.models import ErrorCode, ProtocolError, Role
from server.context import CONTEXT
from server.http.errors import json_response
from server.interactions.polls import PollBook

__all__ = ["routes"]

BASE = "/v1/vstudio/sessions/{sessionId}"

routes = web.RouteTableDef()


async def _settled_polls(request: web.Request) -> tuple[PollBook, str]:
    """The poll book and session id for a signed-in reader; an ended session's poll is ended."""
    ctx = request.app[CONTEXT]
    await ctx.identify(request)
    session = await ctx.sessions.get(request.match_info["sessionId"])
    book = ctx.services.polls.book
    await book.settle(session)
    return book, session.id


@routes.get(BASE + "/polls")
async def list_polls(request: web.Request) -> web.Response:
    """Every poll of the session with its counts (ended ones keep their final results)."""
    book, session_id = await _settled_polls(request)
    every = await book.all(session_id)
    active = next((poll for poll in every if poll.status == "active"), None)
    return json_response(
        {"polls": [poll.wire() for poll in every], "activePoll": active.wire() if active else None}
    )


@routes.get(BASE + "/polls/{pollId}")
async def get_poll(request: web.Request) -> web.Response:
    book, session_id = await _settled_polls(request)
    poll = await book.require(session_id, request.match_info["pollId"])
    return json_response(poll.wire())


@routes.get(BASE + "/tips")
async def list_tips(request: web.Request) -> web.Response:
    """The ledger (fans' tips and platform money, one shape) and its totals, for the artist
    and producers (what settlement reconciles)."""
    ctx = request.app[CONTEXT]
    who = await ctx.identify(request)
    session = await ctx.sessions.get(request.match_info["sessionId"])
    if who.user_id != session.artist_id and who.user_id not in session.producer_ids:
        raise ProtocolError(
            ErrorCode.FORBIDDEN, f"the tip ledger is for the {Role.ARTIST} and producers only"
        )
    ledger = ctx.services.tips
    return json_response(
        {
            "totals": await ledger.totals(session.id),
            "ledgerTotals": await ledger.platform_totals(session.id),
            "tips": await ledger.entries(session.id),
        }
    )
