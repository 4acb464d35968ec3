"""The fans' web page: ``/`` (live sessions) and ``/s/{sessionId}``, served as static files."""

from __future__ import annotations

from aiohttp import web

__all__ = ["routes"]

routes = web.RouteTableDef()
