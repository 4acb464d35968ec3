"""Polls, fan chat, reactions, tips and moderation: the interaction handlers of the server.

Importing this module registers their handlers (``server.actions.action``) and their parts of
``session.state`` (``server.actions.state_part``). The app adds ``routes`` (read endpoints such
as ``GET .../polls``) and calls ``start``/``stop`` for per-process background work (poll
auto-end, result throttling, reaction windows).
"""

from __future__ import annotations

from aiohttp import web

from server import chat, moderation, polls, reactions, tips
from server.context import ServerContext

__all__ = ["HANDLER_MODULES", "routes", "start", "stop"]

HANDLER_MODULES = (polls, chat, reactions, tips, moderation)
"""Imported for their registrations."""

routes = web.RouteTableDef()


async def start(ctx: ServerContext) -> None:
    """Begin this process's background work: poll auto-end and results, reaction windows."""
    polls.runtime(ctx).start()
    reactions.windows(ctx).start()


async def stop(ctx: ServerContext) -> None:
    """Stop it, flushing pending poll results and reaction windows."""
    await reactions.windows(ctx).stop()
    await polls.runtime(ctx).stop()
