"""Identity: accounts, login, JWT checks (HS256 and RS256 via JWKS), guests, the secret file."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.models import ErrorCode, Role, Session
from config import BrokerSettings, ServerSettings
from server.identity.auth import AuthError, Identity, TokenVerifier, mint_token, resolve_jwt_secret
from server.identity.tickets import grant_role
from tests.support.live_server import LiveServer
from tests.support.loopback import serve_app
from tests.support.types import ServerFactory

SECRET = "unit-secret-long-enough-for-hmac-sha256!"


def verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(ServerSettings(**settings), SECRET)


async def test_a_minted_token_verifies() -> None:
    who = await verifier().verify(mint_token(SECRET, user_id="ann", role="artist"))
    assert who == Identity("ann", "ann", Role.ARTIST)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (jwt.encode({"sub": "x", "exp": time.time() + 60}, None, algorithm="none"), "algorithm"),
        (
            mint_token("another-secret-long-enough-for-hmac-sha256", user_id="x", role="viewer"),
            "signature",
        ),
        (mint_token(SECRET, user_id="x", role="viewer", ttl=-10), "expired"),
        (mint_token(SECRET, user_id="x", role="viewer", audience="elsewhere"), "audience"),
        (mint_token(SECRET, user_id="x", role="viewer", issuer="mallory"), "issuer"),
        (mint_token(SECRET, user_id="x", role="viewer", extra={"role": "king"}), "role"),
        ("not-a-jwt", "not a JWT"),
    ],
)
async def test_refused_tokens_say_why(token: str, reason: str) -> None:
    with pytest.raises(AuthError, match=reason):
        await verifier().verify(token)


def session(**fields: Any) -> Session:
    return Session(id="s1", artist_id="ann", title="t", **fields)


def test_grant_role_rules() -> None:
    ann, bob = Identity("ann", "ann", Role.ARTIST), Identity("bob", "bob", Role.VIEWER)
    assert grant_role(session(), ann, "artist") == Role.ARTIST
    assert grant_role(session(), bob, None) == Role.VIEWER
    assert grant_role(session(producer_ids=["bob"]), bob, "producer") == Role.PRODUCER
    for requested, code in [
        ("artist", ErrorCode.FORBIDDEN),
        ("producer", ErrorCode.FORBIDDEN),
        ("token_holder", ErrorCode.TOKEN_GATE_FAILED),  # no gate check given
    ]:
        with pytest.raises(Exception) as caught:
            grant_role(session(), bob, requested)
        assert caught.value.code == code  # type: ignore[attr-defined]  # grant_role raises a ProtocolError
    guest = Identity("g", "g", Role.VIEWER, guest=True, session_id="s1")
    with pytest.raises(Exception, match="does not allow guests"):
        grant_role(session(), guest, "viewer")
    assert grant_role(session(allow_guests=True), guest, "viewer") == Role.VIEWER


def test_generated_secret_is_kept_private_and_shared(tmp_path: Path) -> None:
    broker = BrokerSettings(data_dir=tmp_path)
    first = resolve_jwt_secret(ServerSettings(), broker)
    assert resolve_jwt_secret(ServerSettings(), broker) == first
    mode = stat.S_IMODE(os.stat(tmp_path / "jwt_secret").st_mode)
    assert mode == 0o600
    given = "given-secret-of-at-least-32-bytes"
    assert resolve_jwt_secret(ServerSettings(jwt_secret=given), broker) == given


@pytest.mark.slow
def test_user_add_then_login_and_token_mint(
    live_server: LiveServer, redis_url: str, tmp_path: Path
) -> None:
    name = f"ann{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "VSTUDIO_REDIS_URL": redis_url, "VSTUDIO_JWT_SECRET": live_server.secret}
    cli = [sys.executable, "-m", "vstudio_cli.main"]
    added = subprocess.run(
        [*cli, "user", "add", name, "--role", "artist", "--password", "pw-1234-long"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    again = subprocess.run(
        [*cli, "user", "add", name, "--password", "pw-1234-long"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 1 and "exists already" in again.stderr
    prompted = subprocess.run(
        [*cli, "user", "add", name + "p", "--role", "viewer"],
        env=env,
        input="secret-pw-long\nsecret-pw-long\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert prompted.returncode == 0, prompted.stderr
    minted = subprocess.run(
        [*cli, "token", "mint", "--user", name, "--role", "artist", "--ttl", "60"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )

    async def check() -> None:
        status, body = await live_server.call(
            "POST", "/v1/auth/login", json={"username": name, "password": "pw-1234-long"}
        )
        assert status == 200, body
        assert body["user"] == {"id": name, "username": name, "role": "artist"}
        status, created = await live_server.call(
            "POST",
            "/v1/vstudio/sessions",
            token=body["token"],
            json={"title": "x"},
        )
        assert status == 201 and created["artistId"] == name
        status, body = await live_server.call(
            "POST", "/v1/auth/login", json={"username": name + "p", "password": "secret-pw-long"}
        )
        assert status == 200, body
        status, body = await live_server.call(
            "POST", "/v1/auth/login", json={"username": name, "password": "wrong"}
        )
        assert status == 401 and "wrong password" in body["message"]
        status, created = await live_server.call(
            "POST", "/v1/vstudio/sessions", token=minted.stdout.strip(), json={"title": "y"}
        )
        assert status == 201, created

    asyncio.run(check())


async def test_http_401_reasons(live_server: LiveServer) -> None:
    cases = {
        "expired": mint_token(live_server.secret, user_id="x", role="artist", ttl=-5),
        "signature": mint_token(
            "nope-nope-nope-nope-nope-nope-nope-nope", user_id="x", role="artist"
        ),
        "audience": mint_token(live_server.secret, user_id="x", role="artist", audience="z"),
        "algorithm": jwt.encode({"sub": "x", "exp": time.time() + 60}, None, algorithm="none"),
    }
    for reason, token in cases.items():
        status, body = await live_server.call(
            "POST", "/v1/vstudio/sessions", token=token, json={"title": "t"}
        )
        assert status == 401 and reason in body["message"], (reason, body)
    status, body = await live_server.call("POST", "/v1/vstudio/sessions", json={"title": "t"})
    assert status == 401 and "Authorization" in body["message"]
    _, metrics = await live_server.call("GET", "/metrics")
    counted = [line for line in metrics.splitlines() if 'reason="auth"' in line]
    assert counted and float(counted[0].split()[-1]) >= 5
    logged = [json.loads(line) for line in live_server.log.splitlines() if '"auth failure"' in line]
    assert any(entry.get("reason") == "token expired" for entry in logged)


def fresh_address() -> str:
    """A loopback address no other test uses, so guest limits per address stay apart."""
    number = uuid.uuid4().int
    return f"127.{number % 250 + 1}.{number // 250 % 250 + 1}.{number // 62500 % 250 + 1}"


async def test_guest_tokens_only_where_allowed_and_rate_limited(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(VSTUDIO_GUEST_RATE_LIMIT="2")
    closed = await server.live_session()
    address = fresh_address()

    async def guest(on: LiveServer, session_id: str) -> tuple[int, Any]:
        """Ask ``on`` for a guest token from this test's one address."""
        return await on.call(
            "POST", "/v1/auth/guest", source=address, json={"sessionId": session_id}
        )

    status, body = await guest(server, closed["id"])
    assert status == 403 and body["code"] == ErrorCode.FORBIDDEN
    status, body = await guest(server, "missing1")
    assert status == 404 and body["code"] == ErrorCode.SESSION_NOT_FOUND
    status, body = await guest(server, closed["id"])
    assert status == 429 and body["retryAfter"] > 0
    other = server_factory(VSTUDIO_GUEST_RATE_LIMIT="2")
    status, _ = await guest(other, closed["id"])
    assert status == 429  # the budget is per address in Redis, shared by every server
    status, _ = await other.call(
        "POST", "/v1/auth/guest", source=fresh_address(), json={"sessionId": closed["id"]}
    )
    assert status == 403


async def test_guest_token_reaches_a_guest_session(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_GUEST_RATE_LIMIT="1000")
    open_ = await server.live_session(allowGuests=True)
    status, body = await server.call(
        "POST", "/v1/auth/guest", source=fresh_address(), json={"sessionId": open_["id"]}
    )
    assert status == 200 and body["user"]["guest"] is True
    token = body["token"]
    ticket = await server.ticket(token, open_["id"])
    assert ticket
    other = await server.live_session(allowGuests=True)
    status, body = await server.call(
        "POST", "/v1/vstudio/ticket", token=token, json={"sessionId": other["id"]}
    )
    assert status == 403, body


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.slow
async def test_rs256_tokens_checked_against_a_local_jwks(server_factory: ServerFactory) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    jwks = {
        "keys": [
            {
                "kty": "RSA",
                "kid": "k1",
                "use": "sig",
                "alg": "RS256",
                "n": _b64(numbers.n),
                "e": _b64(numbers.e),
            }
        ]
    }
    app = web.Application()

    async def serve_jwks(request: web.Request) -> web.Response:
        return web.json_response(jwks)

    app.router.add_get("/jwks.json", serve_jwks)
    async with serve_app(app) as base:
        server = server_factory(VSTUDIO_JWT_ALGORITHM="RS256", VSTUDIO_JWKS_URL=f"{base}/jwks.json")
        claims: dict[str, object] = {
            "sub": "rsa-artist",
            "role": "artist",
            "aud": "vstudio",
            "iss": "vstudio",
        }
        claims["exp"] = int(time.time()) + 60
        good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        status, body = await server.call(
            "POST", "/v1/vstudio/sessions", token=good, json={"title": "rsa"}
        )
        assert status == 201 and body["artistId"] == "rsa-artist", body
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"})
        status, body = await server.call(
            "POST", "/v1/vstudio/sessions", token=forged, json={"title": "rsa"}
        )
        assert status == 401 and "signature" in body["message"]
        hs = server.token("rsa-artist", "artist")
        status, body = await server.call(
            "POST", "/v1/vstudio/sessions", token=hs, json={"title": "rsa"}
        )
        assert status == 401 and "algorithm" in body["message"]


def _signed(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256", headers=header)


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "ann",
        "aud": "vstudio",
        "iss": "vstudio",
        "iat": now,
        "exp": now + 60,
        "jti": "j1",
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def _pyjwt(token: str) -> dict[str, Any] | None:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            audience="vstudio",
            issuer="vstudio",
            options={"require": ["exp", "sub"]},
        )
    except jwt.PyJWTError:
        return None
    return claims


def _variants() -> list[str]:
    now = int(time.time())
    good = _signed(_claims())
    head, payload, signature = good.split(".")
    return [
        good,
        mint_token(SECRET, user_id="ann", role="artist"),
        _signed(_claims(), {"typ": None}),
        _signed(_claims(exp=now - 1)),
        _signed(_claims(exp=now + 0.5)),
        _signed(_claims(exp=True)),
        _signed(_claims(exp=str(now + 60))),
        _signed(_claims(exp=None)),
        _signed(_claims(sub=None)),
        _signed(_claims(sub=7)),
        _signed(_claims(iat=now + 120)),
        _signed(_claims(iat="soon")),
        _signed(_claims(nbf=now + 120)),
        _signed(_claims(nbf=now - 5)),
        _signed(_claims(aud=None)),
        _signed(_claims(aud="elsewhere")),
        _signed(_claims(aud=["elsewhere", "vstudio"])),
        _signed(_claims(aud=["elsewhere"])),
        _signed(_claims(aud=["vstudio", 3])),
        _signed(_claims(iss=None)),
        _signed(_claims(iss="mallory")),
        _signed(_claims(jti=5)),
        _signed(_claims(), {"kid": "k1"}),
        jwt.encode(_claims(), SECRET + "x", algorithm="HS256"),
        jwt.encode(_claims(), SECRET, algorithm="HS384"),
        f"{head}.{payload}.{signature}=",
        f"{head}.{payload}.{signature[:-1]}",
        f"{head}.{payload}.x{signature}",
        f"{head}.{payload}.{signature}.{signature}",
        f"{head}.{payload[:-2]}.{signature}",
        f"{head}..{signature}",
        "not-a-jwt",
    ]


@pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")  # the HS384 variant
async def test_the_plain_hs256_path_accepts_only_what_pyjwt_accepts() -> None:
    check = verifier()
    taken = 0
    for token in _variants():
        fast = check.plain_claims(token)
        if fast is not None:
            taken += 1
            assert fast == _pyjwt(token), token
        who = await check.verify(token) if _pyjwt(token) is not None else None
        if who is None:
            with pytest.raises(AuthError):
                await check.verify(token)
    assert taken >= 5  # the common tokens take it: minted ones, nbf, an audience list
    assert check.plain_claims(_signed(_claims())) is not None
