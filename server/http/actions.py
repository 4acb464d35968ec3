"""Every client message as a REST route, for SSE clients and scripts.

Each entry of :data:`REST_ACTIONS` becomes a route under ``/v1/vstudio/sessions/{sessionId}``:
the Bearer JWT gives the user, the role is the strongest one they hold in the session, the body
is validated by the message's own model (path parameters merged in), rate limits are the
WebSocket's, kept in Redis per user and session, and ``Idempotency-Key`` becomes the action's
request id (tips are recorded once per key).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from broker import keys
from broker.models import CLIENT_PAYLOADS, ErrorCode, MessageType, ProtocolError
from server.context import CONTEXT
from server.http.errors import json_response, read_model
from server.identity.participant import Participant
from server.interactions.registry import Actor
from server.ratelimit import limits_for

__all__ = ["BASE", "REST_ACTIONS", "RestAction", "routes"]

BASE = "/v1/vstudio/sessions/{sessionId}"


@dataclass(frozen=True, slots=True)
class RestAction:
    """A REST route under ``/v1/vstudio/sessions/{sessionId}`` that performs a client message.

    Path parameters (``{pollId}``, ``{messageId}``, ``{userId}``) are merged into the JSON body
    under the same camelCase names before the payload model validates it.
    """

    method: str
    path: str
    kind: MessageType
    summary: str


REST_ACTIONS: list[RestAction] = [
    RestAction("POST", "/polls", MessageType.POLL_CREATE, "Create a poll (artist, producer)"),
    RestAction("PATCH", "/polls/{pollId}", MessageType.POLL_UPDATE, "Update a poll"),
    RestAction("POST", "/polls/{pollId}/end", MessageType.POLL_END, "End a poll"),
    RestAction("POST", "/polls/{pollId}/votes", MessageType.POLL_VOTE, "Vote in a poll"),
    RestAction("POST", "/chat", MessageType.CHAT_MESSAGE, "Send a fan chat message"),
    RestAction(
        "POST", "/chat/{messageId}/delete", MessageType.CHAT_DELETE, "Delete a chat message"
    ),
    RestAction("POST", "/mutes", MessageType.CHAT_MUTE, "Mute or unmute a user's chat"),
    RestAction("POST", "/reactions", MessageType.REACTION_SEND, "Send a reaction"),
    RestAction("POST", "/tips", MessageType.TIP_SEND, "Send a tip (Idempotency-Key header)"),
]
"""REST equivalents of client messages, for SSE clients and scripts (same rules and codes).

``PATCH /v1/vstudio/sessions/{sessionId}`` (the session's own route) performs
``session.update`` and ``POST .../end`` performs ``session.end`` through the same handlers.
"""


def _handler(entry: RestAction) -> Callable[[web.Request], Awaitable[web.Response]]:
    model = CLIENT_PAYLOADS[entry.kind]

    async def perform_action(request: web.Request) -> web.Response:
        ctx = request.app[CONTEXT]
        who = await ctx.identify(request)
        session_id = request.match_info["sessionId"]
        params = {name: value for name, value in request.match_info.items() if name != "sessionId"}
        payload = await read_model(request, model, params)
        session = await ctx.sessions.get(session_id)
        role = await ctx.role_of(session, who)
        wait = await ctx.windows.retry_after(
            keys.account_rate(session.id, who.user_id),
            limits_for(ctx.settings, entry.kind),
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
            Participant(session.id, who.user_id, who.username, role),
            transport="rest",
            request_id=key,
        )
        result = await ctx.actions.perform(ctx.services, actor, entry.kind, payload)
        return json_response(result if result is not None else {"ok": True})

    perform_action.__name__ = f"rest_{entry.kind.replace('.', '_')}"
    return perform_action


def routes() -> list[web.RouteDef]:
    """One route per entry of :data:`REST_ACTIONS`."""
    return [web.route(entry.method, BASE + entry.path, _handler(entry)) for entry in REST_ACTIONS]
