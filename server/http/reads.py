"""Polls, fan chat, reactions, tips and moderation: the interaction handlers of the server.

Importing this module registers their handlers (``server.interactions.registry.action``) and
their parts of ``session.state`` (``server.interactions.registry.state_part``). The app adds
``routes`` (read endpoints such as ``GET .../polls``) and calls ``start``/``stop`` for
per-process background work (poll auto-end, result throttling, reaction windows).
"""

from __future__ import annotations

from aiohttp import web

from broker.models import ErrorCode, ProtocolError, Role
from server.context import ServerContext
from server.core import CORE
from server.http.errors import json_response
from server.interactions import chat, moderation, polls, reactions, tips

__all__ = ["HANDLER_MODULES", "routes", "start", "stop"]

HANDLER_MODULES = (polls, chat, reactions, tips, moderation)
"""Imported for their registrations."""

BASE = "/v1/vstudio/sessions/{sessionId}"

routes = web.RouteTableDef()


@routes.get(BASE + "/polls")
async def list_polls(request: web.Request) -> web.Response:
    """Every poll of the session with its counts (ended ones keep their final results)."""
    core = request.app[CORE]
    await core.identify(request)
    session = await core.store.get(request.match_info["sessionId"])
    book = polls.runtime(core.ctx).book
    await book.settle(session)
    every = await book.all(session.id)
    active = next((poll for poll in every if poll.status == "active"), None)
    return json_response(
        {"polls": [poll.wire() for poll in every], "activePoll": active.wire() if active else None}
    )


@routes.get(BASE + "/polls/{pollId}")
async def get_poll(request: web.Request) -> web.Response:
    core = request.app[CORE]
    await core.identify(request)
    session = await core.store.get(request.match_info["sessionId"])
    book = polls.runtime(core.ctx).book
    await book.settle(session)
    poll = await book.require(session.id, request.match_info["pollId"])
    return json_response(poll.wire())


@routes.get(BASE + "/tips")
async def list_tips(request: web.Request) -> web.Response:
    """The tip ledger and totals, for the artist and producers (what settlement reconciles)."""
    core = request.app[CORE]
    who = await core.identify(request)
    session = await core.store.get(request.match_info["sessionId"])
    if who.user_id != session.artist_id and who.user_id not in session.producer_ids:
        raise ProtocolError(
            ErrorCode.FORBIDDEN, f"the tip ledger is for the {Role.ARTIST} and producers only"
        )
    ledger = tips.ledger(core.ctx)
    return json_response(
        {"totals": await ledger.totals(session.id), "tips": await ledger.entries(session.id)}
    )


async def start(ctx: ServerContext) -> None:
    """Begin this process's background work: poll auto-end and results, reaction windows."""
    polls.runtime(ctx).start()
    reactions.windows(ctx).start()


async def stop(ctx: ServerContext) -> None:
    """Stop it, flushing pending poll results and reaction windows."""
    await reactions.windows(ctx).stop()
    await polls.runtime(ctx).stop()
