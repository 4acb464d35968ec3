"""Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import hmac
import os

from aiohttp import web

from server.context import CONTEXT
from server.http.errors import json_response
from server.http.openapi import openapi_document
from server.identity.auth import AuthError

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    ctx = request.app[CONTEXT]
    return json_response({"ok": True, "process": ctx.process_id, "pid": os.getpid()})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Redis answers (and the process is not draining)."""
    ctx = request.app[CONTEXT]
    if ctx.attendance.draining:
        return json_response({"ok": False, "reason": "draining"}, status=503)
    try:
        async with asyncio.timeout(2.0):
            await ctx.bus.redis.ping()
    except Exception as exc:
        return json_response({"ok": False, "reason": f"redis: {exc}"}, status=503)
    return json_response({"ok": True})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text of this process's registry (behind a bearer token when one is set)."""
    ctx = request.app[CONTEXT]
    required = ctx.settings.metrics_token
    if required is not None:
        sent = request.headers.get("Authorization", "")
        expected = f"Bearer {required.get_secret_value()}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise AuthError("/metrics needs 'Authorization: Bearer <metrics_token>'")
    await ctx.metrics.observe_fleet(ctx.bus.redis, ctx.broker.fleet)  # issue 15
    body = ctx.metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())
