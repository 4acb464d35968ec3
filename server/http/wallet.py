"""Sign-In with Ethereum over HTTP: a nonce, then a signed message that links a wallet.

``POST /v1/auth/wallet/nonce`` gives a single-use nonce (and, given an ``address``, a ready
EIP-4361 message for the wallet to sign). ``POST /v1/auth/wallet/verify {message, signature}``
checks the message (domain, chain, time window, nonce unused) and who signed it, then links
the address to the caller's account (``Authorization: Bearer``) or, without one, issues a
viewer token for a wallet-only user. Failed verifies count against the login throttle of
``/v1/auth/login``, per client address and per wallet. ``GET /v1/auth/wallet`` says which
wallet is linked; ``GET /v1/vstudio/sessions/{id}/gate`` what the token gate sees.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import Field

from broker import keys
from broker.models import ErrorCode, ProtocolError, Role, token_requirements
from config import ServerSettings
from server.context import CONTEXT
from server.http.auth import ApiModel
from server.http.errors import json_response, read_model
from server.identity.auth import AuthError
from server.identity.siwe import (
    SiweError,
    build_message,
    check_message,
    parse_message,
    recover_signer,
)
from server.identity.tickets import highest_role
from server.ratelimit import Limit

__all__ = ["NonceRequest", "VerifyRequest", "routes", "siwe_chain_ids", "siwe_domain"]

routes = web.RouteTableDef()

WALLET_USER_PREFIX = "w-"
"""User ids of wallet-only users: ``w-`` and the lowercase address."""


class NonceRequest(ApiModel):
    address: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")
    chain_id: int | None = Field(default=None, ge=1)


class VerifyRequest(ApiModel):
    message: str = Field(min_length=1, max_length=4096)
    signature: str = Field(min_length=1, max_length=200)


def siwe_domain(settings: ServerSettings, request: web.Request) -> str:
    """The domain messages must name: the setting, else public_url's host, else the Host."""
    if settings.siwe_domain:
        return settings.siwe_domain
    if settings.public_url:
        return urlsplit(settings.public_url).netloc
    return request.host


def siwe_chain_ids(settings: ServerSettings) -> frozenset[int]:
    """Chains a wallet may sign in on: the setting, else every chain with an RPC URL."""
    if settings.siwe_chain_ids:
        return frozenset(settings.siwe_chain_ids)
    return frozenset(settings.eth_rpc_endpoints()) or frozenset({settings.eth_chain_id})


@routes.post("/v1/auth/wallet/nonce")
async def nonce(request: web.Request) -> web.Response:
    """A single-use nonce; with ``address``, the message to sign as well."""
    ctx = request.app[CONTEXT]
    body = await read_model(request, NonceRequest) if request.can_read_body else NonceRequest()
    wait = await ctx.windows.retry_after(
        keys.wallet_nonce_rate(request.remote or "unknown"),
        (Limit("nonces", ctx.settings.guest_rate_limit * 6, 60.0),),
        time.time(),
    )
    if wait is not None:
        raise ProtocolError(ErrorCode.RATE_LIMITED, "too many nonces from this address", wait)
    value = await ctx.wallets.issue_nonce()
    domain = siwe_domain(ctx.settings, request)
    chains = sorted(siwe_chain_ids(ctx.settings))
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ctx.settings.siwe_nonce_ttl)
    answer: dict[str, object] = {
        "nonce": value,
        "domain": domain,
        "chainIds": chains,
        "expiresIn": ctx.settings.siwe_nonce_ttl,
    }
    if body.address is not None:
        chain = body.chain_id if body.chain_id in chains else chains[0]
        answer["message"] = build_message(
            domain=domain,
            address=body.address,
            uri=f"{request.scheme}://{request.host}",
            chain_id=chain,
            nonce=value,
            issued_at=now,
            expiration_time=expires,
        )
    return json_response(answer)


@routes.post("/v1/auth/wallet/verify")
async def verify(request: web.Request) -> web.Response:
    """Link the wallet that signed ``message`` (or sign a wallet-only user in)."""
    ctx = request.app[CONTEXT]
    who = None
    if request.headers.get("Authorization"):
        who = await ctx.identify(request)
        if who.guest:
            raise ProtocolError(ErrorCode.FORBIDDEN, "guests cannot link a wallet; log in first")
    body = await read_model(request, VerifyRequest)
    settings = ctx.settings
    claimed = body.message.split("\n", 2)[1].strip().lower() if "\n" in body.message else "-"
    failures = {
        keys.login_failures_user(f"wallet:{claimed[:42]}"): Limit(
            "user", settings.login_failures_per_user, settings.login_failure_window
        ),
        keys.login_failures_address(request.remote or "unknown"): Limit(
            "address", settings.login_failures_per_address, settings.login_failure_window
        ),
    }
    wait = await ctx.windows.wait(failures, time.time())
    if wait is not None:
        raise ProtocolError(
            ErrorCode.RATE_LIMITED, "too many failed sign-ins; try again later", wait
        )
    try:
        message = parse_message(body.message)
        check_message(
            message,
            domain=siwe_domain(settings, request),
            chain_ids=siwe_chain_ids(settings),
            now=datetime.now(UTC),
        )
        if not await ctx.wallets.nonce_is_fresh(message.nonce):
            raise SiweError("the nonce is unknown, expired or already used; ask for a new one")
        signer = recover_signer(body.message, body.signature)
        if signer != message.address:
            raise SiweError(
                f"the signature was made by {signer}, not by {message.address} (the message's)"
            )
        if not await ctx.wallets.use_nonce(message.nonce):  # two verifies raced: one wins
            raise SiweError("the nonce is unknown, expired or already used; ask for a new one")
    except SiweError as exc:
        await ctx.windows.record(failures, time.time())
        raise AuthError(f"sign-in with Ethereum refused: {exc}") from exc
    address = message.address.lower()
    if who is not None:
        moved = await ctx.wallets.link(who.user_id, address)
        answer: dict[str, object] = {
            "linked": True,
            "address": message.address,
            "userId": who.user_id,
        }
        if moved is not None and moved != who.user_id:
            answer["movedFrom"] = moved
        return json_response(answer)
    user_id = WALLET_USER_PREFIX + address
    username = f"{message.address[:6]}…{message.address[-4:]}"
    await ctx.wallets.link(user_id, address)
    token = ctx.verifier.mint(user_id, Role.VIEWER, username=username, extra={"wallet": address})
    user = {"id": user_id, "username": username, "role": "viewer", "wallet": message.address}
    return json_response(
        {
            "token": token,
            "user": user,
            "expiresIn": settings.token_ttl,
            "linked": True,
            "address": message.address,
        }
    )


@routes.get("/v1/auth/wallet")
async def linked(request: web.Request) -> web.Response:
    """The wallet linked to the caller's account, or ``null``."""
    ctx = request.app[CONTEXT]
    who = await ctx.identify(request)
    return json_response(
        {"userId": who.user_id, "address": await ctx.wallets.address_of(who.user_id)}
    )


@routes.get("/v1/vstudio/sessions/{sessionId}/gate")
async def gate(request: web.Request) -> web.Response:
    """What the token gate sees: for ``?address=`` (the session's staff only), else for the
    caller's own linked wallet."""
    ctx = request.app[CONTEXT]
    who = await ctx.identify(request)
    session = await ctx.sessions.get(request.match_info["sessionId"])
    asked = request.query.get("address")
    if asked is not None:
        if not who.operator and highest_role(session, who) not in (Role.ARTIST, Role.PRODUCER):
            raise ProtocolError(
                ErrorCode.FORBIDDEN, "only the session's artist and producers check any address"
            )
        if not (asked.startswith("0x") and len(asked) == 42):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{asked!r} is not an address")
        try:
            int(asked[2:], 16)
        except ValueError:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{asked!r} is not an address") from None
        required = token_requirements(session.required_tokens)
        verdict = await ctx.gate.check(required, asked)
        return json_response({"sessionId": session.id, **verdict.wire()})
    verdict = await ctx.holder_verdict(session, who)
    return json_response({"sessionId": session.id, **verdict.wire()})
