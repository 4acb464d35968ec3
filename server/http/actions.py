"""Every client message as a REST route, for SSE clients and scripts.

Each entry of :data:`server.interactions.registry.REST_ACTIONS` becomes a route under
``/v1/vstudio/sessions/{sessionId}``: the Bearer JWT gives the user, the role is the strongest
one they hold in the session, the body is validated by the message's own model (path
parameters merged in), rate limits are the WebSocket's, kept in Redis per user and session,
and ``Idempotency-Key`` becomes the action's request id (tips are recorded once per key).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from broker import keys
from broker.models import CLIENT_PAYLOADS, ErrorCode, ProtocolError
from server.core import CORE, highest_role
from server.http.errors import json_response, read_model
from server.interactions.registry import REST_ACTIONS, Actor, RestAction, perform
from server.ratelimit import limits_for

__all__ = ["BASE", "add_routes"]

BASE = "/v1/vstudio/sessions/{sessionId}"


def _handler(entry: RestAction) -> Callable[[web.Request], Awaitable[web.Response]]:
    model = CLIENT_PAYLOADS[entry.kind]

    async def perform_action(request: web.Request) -> web.Response:
        core = request.app[CORE]
        who = await core.identify(request)
        session_id = request.match_info["sessionId"]
        params = {name: value for name, value in request.match_info.items() if name != "sessionId"}
        payload = await read_model(request, model, params)
        session = await core.store.get(session_id)
        role = highest_role(session, who)
        wait = await core.windows.retry_after(
            keys.rest_rate(session.id, who.user_id),
            limits_for(core.settings, entry.kind),
            time.time(),
        )
        if wait is not None:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED, f"too many {entry.kind} messages; slow down", wait
            )
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= 128:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "Idempotency-Key must be 1-128 chars")
        actor = Actor(
            user_id=who.user_id,
            username=who.username,
            role=role,
            session_id=session.id,
            transport="rest",
            request_id=key,
        )
        result = await perform(core.ctx, actor, entry.kind, payload)
        return json_response(result if result is not None else {"ok": True})

    perform_action.__name__ = f"rest_{entry.kind.replace('.', '_')}"
    return perform_action


def add_routes(app: web.Application) -> None:
    """Register every REST action on ``app``."""
    for entry in REST_ACTIONS:
        app.router.add_route(entry.method, BASE + entry.path, _handler(entry))
