"""HTTP errors as JSON ``{code, message, retryAfter?}``, mapped from the wire's error codes.

REST callers get the same codes as WebSocket clients, with the HTTP status a generic client
understands (400, 401, 403, 404, 409, 413, 429, and 503 with ``Retry-After`` while Redis is
unreachable).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from broker.models import ErrorCode, ProtocolError
from server.context import CONTEXT, ServerContext
from server.identity.auth import AuthError
from server.interactions.sessions import ArtistBusy
from server.presence import ConnectionLimit
from server.ratelimit import OUTAGES, outage

__all__ = [
    "BODY_TIMEOUT",
    "MAX_BODY",
    "error_middleware",
    "error_response",
    "http_status",
    "json_error",
    "json_response",
    "parse_model",
    "read_model",
]

log = logging.getLogger("vstudio.server.http.errors")

MAX_BODY = web.AppKey("max_body", int)
"""The largest JSON body a REST route reads (the WebSocket's message limit)."""
BODY_TIMEOUT = web.AppKey("body_timeout", float)
"""Seconds a REST route waits for its whole body (a slow sender is cut off with 408)."""

STATUS: dict[int, int] = {
    ErrorCode.INVALID_TICKET: 401,
    ErrorCode.SESSION_NOT_FOUND: 404,
    ErrorCode.SESSION_ENDED: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.TOKEN_GATE_FAILED: 403,
    ErrorCode.INVALID_MESSAGE: 400,
    ErrorCode.MESSAGE_TOO_LARGE: 413,
    ErrorCode.SESSION_FULL: 409,
    ErrorCode.UNAVAILABLE: 503,
}

ModelT = TypeVar("ModelT", bound=BaseModel)


def http_status(error: ProtocolError) -> int:
    """The HTTP status of a protocol error (409 for an artist already live, 429 for too many
    open connections)."""
    if isinstance(error, ArtistBusy):
        return 409
    if isinstance(error, ConnectionLimit):
        return 429
    return STATUS.get(int(error.code), 400)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def json_error(
    status: int, code: int, message: str, retry_after: float | None = None
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    headers = {}
    if retry_after is not None:
        body["retryAfter"] = round(retry_after, 3)
        headers["Retry-After"] = str(max(1, round(retry_after + 0.5)))
    response = json_response(body, status)
    response.headers.update(headers)
    return response


async def read_model(
    request: web.Request, model: type[ModelT], extra: dict[str, Any] | None = None
) -> ModelT:
    """The JSON body validated by ``model`` (``extra`` merged in), or ProtocolError 4006/4007."""
    try:
        async with asyncio.timeout(request.app[BODY_TIMEOUT]):
            raw = await request.read() if request.can_read_body else b""
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the request body did not arrive within {request.app[BODY_TIMEOUT]:g} s",
            headers={"Connection": "close"},
        ) from None
    return parse_model(raw, model, request.app[MAX_BODY], extra)


def parse_model(
    raw: bytes, model: type[ModelT], limit: int, extra: dict[str, Any] | None = None
) -> ModelT:
    """A whole JSON body validated by ``model`` (``extra`` merged in), or ProtocolError
    4006/4007: :func:`read_model` once the body is read, and the front's ticket route."""
    if len(raw) > limit:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE, f"body is {len(raw)} bytes; the limit is {limit}"
        )
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "body must be a JSON object")
    data.update(extra or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{where}: {first['msg']}") from exc


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as JSON with a code and a message people can act on."""
    try:
        declared = request.content_length
        limit = request.app[MAX_BODY]
        if declared is not None and declared > limit:  # refuse before reading a byte of it
            raise ProtocolError(
                ErrorCode.MESSAGE_TOO_LARGE, f"body is {declared} bytes; the limit is {limit}"
            )
        return await handler(request)
    except web.HTTPRequestEntityTooLarge as exc:
        return json_error(413, int(ErrorCode.MESSAGE_TOO_LARGE), exc.text or "body too large")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        response = json_error(exc.status, exc.status, exc.text or exc.reason)
        # 405 must say what is allowed, 426 which WebSocket version
        for name in ("Allow", "Retry-After", "Connection", "Sec-WebSocket-Version"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception as exc:
        ctx = request.app.get(CONTEXT)
        refusal = error_response(exc, ctx, request.method, request.path, request.remote)
        if refusal is None:
            raise
        return refusal


def error_response(
    exc: Exception, ctx: ServerContext | None, method: str, path: str, peer: str | None = None
) -> web.Response | None:
    """The JSON refusal for an error a route raised (logged and counted as it should be), or
    ``None`` for one that is no refusal (a bug: a 500). Used by :func:`error_middleware` and by
    the front's ticket route, so both answer alike."""
    if isinstance(exc, ProtocolError):
        return json_error(http_status(exc), int(exc.code), exc.message, exc.retry_after)
    if isinstance(exc, AuthError):
        log.info("auth failure", extra={"reason": str(exc), "path": path, "peer": peer})
        if ctx is not None:
            ctx.metrics.errors.labels("auth").inc()
        response = json_error(401, 401, str(exc))
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    if isinstance(exc, ConnectionResetError):  # the client left mid-request: not an error
        log.info("client left mid-request", extra={"path": path, "peer": peer})
        return json_error(400, int(ErrorCode.INVALID_MESSAGE), "connection lost mid-request")
    if isinstance(exc, OUTAGES) and ctx is not None:  # retryable, not a 500 (issue 13)
        log.warning("Redis unreachable: %s", exc, extra={"path": path})
        error = outage(ctx.settings, f"{method} {path}")
        return json_error(503, int(error.code), error.message, error.retry_after)
    return None
