"""The OpenAPI 3.1 document, built from the same pydantic models that validate the requests.

Schemas come from ``model_json_schema``; the paths are assembled here, including one route per
entry of :data:`server.http.actions.REST_ACTIONS`, so a new action appears in the
document by itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from broker.models import CLIENT_PAYLOADS, ErrorPayload, Poll, Session, SessionUpdate
from broker.sources import SourceSpec
from server.http.actions import REST_ACTIONS
from server.http.announcements import AnnouncementRequest
from server.http.auth import GuestRequest, LoginRequest, TicketRequest
from server.http.sessions import SessionCreate
from server.http.wallet import NonceRequest, VerifyRequest

__all__ = ["openapi_document"]

REF = "#/components/schemas/{model}"
ERROR_STATUSES = {
    "400": "invalid request (4006)",
    "401": "missing or refused token",
    "403": "role not allowed (4004, 4005)",
    "404": "session not found (4001)",
    "409": "conflict: session ended (4002), artist already live, session full (4008)",
    "413": "body too large (4007)",
    "408": "the body did not arrive within body_timeout",
    "429": "rate limited (4003, retryAfter); too many open connections (4008)",
    "503": "Redis unreachable for a moment (4009, retryAfter): nothing was done, send it again",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _errors() -> dict[str, Any]:
    return {
        status: {
            "description": text,
            "content": {"application/json": {"schema": _ref(ErrorPayload)}},
        }
        for status, text in ERROR_STATUSES.items()
    }


def _operation(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    response: dict[str, Any] | None = None,
    status: str = "200",
    auth: bool = True,
    params: Sequence[str] = (),
    headers: Sequence[str] = (),
    query: Sequence[str] = (),
    body_required: bool = True,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            status: {
                "description": "done",
                "content": {"application/json": {"schema": response or {"type": "object"}}},
            },
            **_errors(),
        },
    }
    parameters = (
        [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in params
        ]
        + [
            {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
            for name in headers
        ]
        + [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in query
        ]
    )
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if auth:
        operation["security"] = [{"bearer": []}]
    return operation


def _sources_paths(session_path: str) -> dict[str, dict[str, Any]]:
    """A session's chat sources (issue 15): 201 new, 200 replaced, 422 a target the platform
    refuses; the staff only."""
    source = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "platform": {"type": "string"},
            "target": {"type": "string"},
            "credentials": {"type": "string"},
            "redundancy": {"type": ["integer", "null"]},
            "owners": {"type": "array", "items": {"type": "string"}},
            "state": {"type": "string"},
            "msgPerS": {"type": "number"},
            "lagMs": {"type": ["integer", "null"]},
            "lastError": {"type": "string"},
        },
        "required": ["id", "platform", "target", "credentials"],
    }
    listing = {
        "type": "object",
        "properties": {
            "sessionId": {"type": "string"},
            "sources": {"type": "array", "items": source},
        },
        "required": ["sessionId", "sources"],
    }
    declared = {
        "type": "object",
        "properties": {
            "sessionId": {"type": "string"},
            "created": {"type": "boolean"},
            "source": source,
        },
        "required": ["sessionId", "created", "source"],
    }
    add = _operation(
        "Declare a chat source for the worker fleet (artist, producers, operators): 201 new, "
        "200 replaced (credentials, redundancy)",
        body=SourceSpec,
        response=declared,
        status="201",
        params=["sessionId"],
    )
    add["responses"]["200"] = {
        "description": "already declared: replaced",
        "content": {"application/json": {"schema": declared}},
    }
    add["responses"]["422"] = {
        "description": "the platform does not accept this target (4006, the rule it breaks)",
        "content": {"application/json": {"schema": _ref(ErrorPayload)}},
    }
    return {
        session_path + "/sources": {
            "get": _operation(
                "The session's chat sources (artist, producers, operators); ?health=1 adds "
                "each one's owners, state, msg/s, lag and last error",
                response=listing,
                params=["sessionId"],
                query=["health"],
            ),
            "post": add,
        },
        session_path + "/sources/{sourceId}": {
            "delete": _operation(
                "Withdraw a chat source (sourceId: platform:target); 404 when not declared",
                params=["sessionId", "sourceId"],
            )
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document (built once per process)."""
    models: list[type[BaseModel]] = [
        LoginRequest,
        GuestRequest,
        TicketRequest,
        NonceRequest,
        VerifyRequest,
        SessionCreate,
        AnnouncementRequest,
        Session,
        SessionUpdate,
        Poll,
        ErrorPayload,
        SourceSpec,
        *CLIENT_PAYLOADS.values(),
    ]
    unique = list(dict.fromkeys(models))
    _, schema = models_json_schema(
        [(model, "validation") for model in unique], by_alias=True, ref_template=REF
    )
    session_path = "/v1/vstudio/sessions/{sessionId}"
    session_view = {  # GET adds the live count to the record
        "allOf": [
            _ref(Session),
            {
                "type": "object",
                "properties": {"viewerCount": {"type": "integer", "minimum": 0}},
                "required": ["viewerCount"],
            },
        ]
    }
    polls_list = {
        "type": "object",
        "properties": {
            "polls": {"type": "array", "items": _ref(Poll)},
            "activePoll": {"anyOf": [_ref(Poll), {"type": "null"}]},
        },
        "required": ["polls", "activePoll"],
    }
    tips_ledger = {
        "type": "object",
        "properties": {
            "totals": {"type": "object", "additionalProperties": {"type": "integer"}},
            "tips": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["totals", "tips"],
    }
    upgrade = {
        "summary": "WebSocket upgrade (?ticket=, ?since= resumes; or Authorization: Bearer with "
        "?sessionId=&role=); failures after the upgrade are close codes 4000-4009 (1013: "
        "Redis unreachable, try again later)",
        "responses": {
            "101": {"description": "switching protocols"},
            "400": {"description": "not a WebSocket upgrade request"},
            "426": {
                "description": "a WebSocket version other than 13 (the answer's "
                "Sec-WebSocket-Version says which)"
            },
        },
    }
    paths: dict[str, dict[str, Any]] = {
        "/v1/auth/login": {
            "post": _operation("Log in: token and user", body=LoginRequest, auth=False)
        },
        "/v1/auth/logout": {
            "post": _operation(
                "Revoke the token sent: every process refuses it from now on",
                response={
                    "type": "object",
                    "properties": {
                        "revoked": {"type": "boolean"},
                        "expiresAt": {"type": ["integer", "null"]},
                    },
                },
            )
        },
        "/v1/auth/guest": {
            "post": _operation(
                "A guest viewer token for a session that allows guests",
                body=GuestRequest,
                auth=False,
            )
        },
        "/v1/auth/wallet/nonce": {
            "post": _operation(
                "A single-use Sign-In with Ethereum nonce (and, given address, the message)",
                body=NonceRequest,
                body_required=False,
                auth=False,
            )
        },
        "/v1/auth/wallet/verify": {
            "post": _operation(
                "Verify a signed EIP-4361 message: link the wallet, or a wallet-only viewer token",
                body=VerifyRequest,
                auth=False,
            )
        },
        "/v1/auth/wallet": {
            "get": _operation(
                "The wallet linked to the caller's account (address null when none)",
                response={
                    "type": "object",
                    "properties": {
                        "userId": {"type": "string"},
                        "address": {"type": ["string", "null"]},
                    },
                },
            )
        },
        "/v1/vstudio/ticket": {
            "post": _operation("A single-use WebSocket ticket (30 s)", body=TicketRequest)
        },
        "/v1/vstudio/sessions": {
            "post": _operation(
                "Create a session (artist)",
                body=SessionCreate,
                response=_ref(Session),
                status="201",
            ),
            "get": _operation("List sessions (query: artistId, status, limit)", auth=False),
        },
        session_path: {
            "get": _operation(
                "A session with its viewerCount (without a token: the fans' view, no "
                "producerIds or token-gate details)",
                response=session_view,
                auth=False,
                params=["sessionId"],
            ),
            "patch": _operation(
                "Update a session (artist; producers toggle chat and reactions)",
                body=SessionUpdate,
                params=["sessionId"],
            ),
        },
        session_path + "/gate": {
            "get": _operation(
                "What the token gate sees for the caller's linked wallet, or for ?address= "
                "(the session's artist and producers only)",
                params=["sessionId"],
                query=["address"],
            )
        },
        session_path + "/start": {
            "post": _operation("Start: scheduled -> live (artist)", params=["sessionId"])
        },
        session_path + "/end": {
            "post": _operation("End for everyone (artist)", params=["sessionId"])
        },
        "/v1/vstudio/announcements": {
            "post": _operation(
                "Announce to one session (its artist, producers, operators) or, without "
                "sessionId, to every session (operators: token claim operator=true)",
                body=AnnouncementRequest,
            )
        },
        "/v1/vstudio/sse/{sessionId}": {
            "get": {
                **_operation(
                    "Server-Sent Events of a session (Bearer, ?token= or ?ticket=; "
                    "Last-Event-ID resumes)",
                    params=["sessionId"],
                    headers=["Last-Event-ID"],
                ),
                "responses": {"200": {"description": "text/event-stream"}, **_errors()},
            }
        },
        "/v1/vstudio/ws": {"get": upgrade},
        "/v1/vstudio/ws/{sessionId}": {
            "get": {
                **upgrade,
                "parameters": [
                    {
                        "name": "sessionId",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
            }
        },
        session_path + "/polls": {
            "get": _operation(
                "Every poll of the session with its counts",
                response=polls_list,
                params=["sessionId"],
            )
        },
        session_path + "/polls/{pollId}": {
            "get": _operation(
                "One poll with its counts", response=_ref(Poll), params=["sessionId", "pollId"]
            )
        },
        session_path + "/tips": {
            "get": _operation(
                "The tip ledger and totals (artist, producers)",
                response=tips_ledger,
                params=["sessionId"],
            )
        },
    }
    paths.update(_sources_paths(session_path))  # issue 15
    for entry in REST_ACTIONS:
        path = session_path + entry.path
        names = ["sessionId", *re.findall(r"{(\w+)}", entry.path)]
        headers = ["Idempotency-Key"]
        paths.setdefault(path, {})[entry.method.lower()] = _operation(
            f"{entry.summary} (performs {entry.kind})",
            body=CLIENT_PAYLOADS[entry.kind],
            params=names,
            headers=headers,
        )
    for plain in ("/healthz", "/readyz"):
        paths[plain] = {"get": _operation(plain[1:], auth=False)}
    paths["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics (Bearer metrics_token when one is set)",
            "responses": {
                "200": {
                    "description": "the Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": {"description": "metrics_token is set and was not sent"},
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "V Studio realtime", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
