"""Identity over HTTP: login, guest tokens and WebSocket tickets."""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from broker import keys
from broker.models import ErrorCode, ProtocolError, Role
from server.context import CONTEXT, ServerContext
from server.http.errors import json_response, read_model
from server.identity.accounts import AccountError
from server.identity.auth import VERSION_CLAIM, AuthError, Identity
from server.ratelimit import Limit

__all__ = ["GuestRequest", "LoginRequest", "TicketRequest", "issue_ticket", "routes"]

routes = web.RouteTableDef()


class ApiModel(BaseModel):
    """Request bodies: camelCase, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class LoginRequest(ApiModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class GuestRequest(ApiModel):
    session_id: str = Field(min_length=1, max_length=64)


class TicketRequest(ApiModel):
    session_id: str = Field(min_length=1, max_length=64)
    role: Role = Role.VIEWER


@routes.post("/v1/auth/login")
async def login(request: web.Request) -> web.Response:
    """Trade a username and password for a token."""
    ctx = request.app[CONTEXT]
    body = await read_model(request, LoginRequest)
    settings = ctx.settings
    window = settings.login_failure_window
    failures = {
        keys.login_failures_user(body.username): Limit(
            "user", settings.login_failures_per_user, window
        ),
        keys.login_failures_address(request.remote or "unknown"): Limit(
            "address", settings.login_failures_per_address, window
        ),
    }
    wait = await ctx.windows.wait(failures, time.time())
    if wait is not None:  # checked before the password: a right guess now would prove nothing
        raise ProtocolError(ErrorCode.RATE_LIMITED, "too many failed logins; try again later", wait)
    try:
        account = await ctx.accounts.check(body.username, body.password)
    except AccountError as exc:
        await ctx.windows.record(failures, time.time())
        raise AuthError(str(exc)) from exc
    token = ctx.verifier.mint(
        account.user_id,
        account.role,
        username=account.username,
        extra={VERSION_CLAIM: account.version},
    )
    return json_response(
        {"token": token, "user": account.wire(), "expiresIn": ctx.settings.token_ttl}
    )


@routes.post("/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    """Take this token back: every process refuses it from now on."""
    ctx = request.app[CONTEXT]
    who = await ctx.identify(request)
    revocations = ctx.verifier.revocations
    if revocations is None or who.token_id is None:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "this token has no id (jti), so it cannot be revoked"
        )
    await revocations.revoke(who)
    return json_response({"revoked": True, "expiresAt": who.expires_at})


@routes.post("/v1/auth/guest")
async def guest(request: web.Request) -> web.Response:
    """A viewer token for one session that allows guests; limited per client address."""
    ctx = request.app[CONTEXT]
    body = await read_model(request, GuestRequest)
    address = request.remote or "unknown"
    wait = await ctx.windows.retry_after(
        keys.guest_rate(address),
        (Limit("tokens", ctx.settings.guest_rate_limit, 60.0),),
        time.time(),
    )
    if wait is not None:
        raise ProtocolError(ErrorCode.RATE_LIMITED, "too many guest tokens from this address", wait)
    session = await ctx.sessions.get(body.session_id)
    if not session.allow_guests:
        raise ProtocolError(ErrorCode.FORBIDDEN, f"session {session.id} does not allow guests")
    user_id = f"guest-{secrets.token_hex(6)}"
    token = ctx.verifier.mint(
        user_id, Role.VIEWER, username=user_id, extra={"guest": True, "sid": session.id}
    )
    user = {"id": user_id, "username": user_id, "role": "viewer", "guest": True}
    return json_response({"token": token, "user": user, "expiresIn": ctx.settings.token_ttl})


@routes.post("/v1/vstudio/ticket")
async def ticket(request: web.Request) -> web.Response:
    """A single-use ticket for the WebSocket, with the role the user holds in the session.

    Served here when it comes after another request on its connection; as a connection's first
    request the front serves it without aiohttp (``server/front.py``)."""
    ctx = request.app[CONTEXT]
    who = await ctx.identify(request)
    body = await read_model(request, TicketRequest)
    return json_response(await issue_ticket(ctx, who, body))


async def issue_ticket(ctx: ServerContext, who: Identity, body: TicketRequest) -> dict[str, Any]:
    """The ticket route's answer for a caller already identified: rate limit, role, ticket."""
    wait = await ctx.windows.retry_after(
        keys.ticket_rate(who.user_id),
        (Limit("tickets", ctx.settings.ticket_rate_limit, 60.0),),
        time.time(),
    )
    if wait is not None:
        raise ProtocolError(ErrorCode.RATE_LIMITED, "too many tickets for this user", wait)
    session = await ctx.sessions.get_shared(body.session_id)
    role = await ctx.grant(session, who, body.role)
    ticket_id = await ctx.tickets.issue(who, session.id, role)
    return {"ticket": ticket_id, "expiresIn": ctx.settings.ticket_ttl, "role": str(role)}
