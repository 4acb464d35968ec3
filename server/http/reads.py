"""Read endpoints of a session's interactions: its polls with their counts, its tip ledger."""

from __future__ import annotations

from aiohttp import web

from broker.models import ErrorCode, ProtocolError, Role, Session
from server.context import CONTEXT, ServerContext
from server.http.errors import json_response
from server.identity.auth import Identity
from server.interactions.polls import PollBook

__all__ = ["routes"]

BASE = "/v1/vstudio/sessions/{sessionId}"

routes = web.RouteTableDef()


async def _settled_polls(request: web.Request) -> tuple[PollBook, str, bool]:
    """The poll book and session id for a signed-in reader, and whether the reader sees gated
    polls (token holders, artist, producers); an ended session's poll is ended."""
    ctx = request.app[CONTEXT]
    who = await ctx.identify(request)
    session = await ctx.sessions.get(request.match_info["sessionId"])
    book = ctx.services.polls.book
    await book.settle(session)
    return book, session.id, await _sees_gated(ctx, session, who)


async def _sees_gated(ctx: ServerContext, session: Session, who: Identity) -> bool:
    """Staff always; anyone else whose linked wallet passes the token gate (ended or not)."""
    if not who.guest and (who.user_id == session.artist_id or who.user_id in session.producer_ids):
        return True
    if who.guest or not session.required_tokens:
        return False
    try:
        return (await ctx.holder_verdict(session, who)).passed
    except ProtocolError:
        return False


@routes.get(BASE + "/polls")
async def list_polls(request: web.Request) -> web.Response:
    """Every poll of the session with its counts (ended ones keep their final results)."""
    book, session_id, sees_gated = await _settled_polls(request)
    every = [poll for poll in await book.all(session_id) if sees_gated or not poll.gated]
    active = next((poll for poll in every if poll.status == "active"), None)
    return json_response(
        {"polls": [poll.wire() for poll in every], "activePoll": active.wire() if active else None}
    )


@routes.get(BASE + "/polls/{pollId}")
async def get_poll(request: web.Request) -> web.Response:
    book, session_id, sees_gated = await _settled_polls(request)
    poll = await book.require(session_id, request.match_info["pollId"])
    if poll.gated and not sees_gated:
        raise ProtocolError(
            ErrorCode.TOKEN_GATE_FAILED, f"poll {poll.id} is for token holders only"
        )
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
