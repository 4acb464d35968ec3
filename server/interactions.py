"""Polls, fan chat, reactions, tips and moderation: the interaction handlers of the server.

Importing this module registers their handlers (``server.actions.action``) and their parts of
``session.state`` (``server.actions.state_part``). The app adds ``routes`` (read endpoints such
as ``GET .../polls``) and calls ``start``/``stop`` for per-process background work (poll
auto-end, result throttling, reaction windows).
"""

from __future__ import annotations

from aiohttp import web

from server.context import ServerContext

__all__ = ["routes", "start", "stop"]

routes = web.RouteTableDef()


async def start(ctx: ServerContext) -> None:
    """Begin this process's background work for interactions."""


async def stop(ctx: ServerContext) -> None:
    """Stop it, flushing anything pending."""
