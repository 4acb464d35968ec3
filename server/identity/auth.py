"""Login tokens: JWTs signed HS256 with the shared secret, or RS256 checked against a JWKS URL.

Tokens can be taken back: each carries an id (``jti``, listed in Redis once logged out) and a
login token the account's version (:data:`VERSION_CLAIM`, raised when the account's role or
password changes, gone when it is deleted); :class:`Revocations` checks both in one round trip.

Every server process and every restart must accept the same tokens, so when no secret is
configured one is generated once and kept in the data folder (mode 0600). Verification always
names the algorithms it accepts (so ``alg: none`` is refused), checks audience and issuer, and
turns every failure into :class:`AuthError` with a reason the caller can show as a 401.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import time
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import orjson
import redis.asyncio as aioredis
from jwt.algorithms import HMACAlgorithm
from jwt.utils import base64url_decode

from broker import keys
from broker.models import Role
from config import BrokerSettings, ServerSettings
from server.turns import TurnBatch

__all__ = [
    "VERSION_CLAIM",
    "AuthError",
    "Identity",
    "Revocations",
    "TokenVerifier",
    "WeakSecret",
    "bearer_token",
    "mint_token",
    "resolve_jwt_secret",
]

SECRET_FILE = "jwt_secret"
VERSION_CLAIM = "vstudio_ver"
"""The claim with the account's version in a login token (a name no other issuer uses)."""
MIN_SECRET_BYTES = 32
"""HS256 keys shorter than the hash (RFC 7518 section 3.2) can be guessed offline from one token."""


PLAIN_HS256_HEADERS = frozenset(
    urlsafe_b64encode(header).rstrip(b"=").decode()
    for header in (
        b'{"alg":"HS256","typ":"JWT"}',
        b'{"typ":"JWT","alg":"HS256"}',
        b'{"alg":"HS256"}',
    )
)
"""The header segments of HS256 tokens as PyJWT and common libraries write them."""


class AuthError(Exception):
    """A token was missing or refused; the message is the reason (HTTP 401)."""


class WeakSecret(ValueError):
    """The configured JWT secret is too short to sign tokens with."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid token says the caller is."""

    user_id: str
    username: str
    role: Role
    guest: bool = False
    session_id: str | None = None
    token_id: str | None = field(default=None, compare=False)
    """The token's ``jti``, to revoke it on logout."""
    expires_at: int | None = field(default=None, compare=False)
    operator: bool = False
    """The token carries ``"operator": true``: it may announce to every session."""


class Revocations:
    """Which tokens were taken back, in Redis so every process refuses them at once.

    The checks of one loop turn (a reconnect storm's ticket requests) are read in one
    pipeline; each token is still looked up at the moment it is presented.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._lookups: TurnBatch[tuple[str | None, str | None], tuple[bool, bytes | None]] = (
            TurnBatch(self._lookup)
        )

    async def check(self, claims: dict[str, Any]) -> None:
        """:class:`AuthError` if the token was logged out or its account changed since."""
        token_id, version = claims.get("jti"), claims.get(VERSION_CLAIM)
        if token_id is None and version is None:
            return
        user = str(claims["sub"]) if version is not None else None
        revoked, current = await self._lookups.call(
            (str(token_id) if token_id is not None else None, user)
        )
        if revoked:
            raise AuthError("token revoked: it was logged out")
        if version is not None:
            if current is None:
                raise AuthError("token revoked: the account no longer exists")
            if int(current) != int(version):
                raise AuthError("token revoked: the account changed since; log in again")

    async def _lookup(
        self, asks: list[tuple[str | None, str | None]]
    ) -> list[tuple[bool, bytes | None]]:
        """For each (token id, user whose version to read): revoked?, the account's version."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for token_id, user in asks:
                if token_id is not None:
                    pipe.exists(keys.revoked_token(token_id))
                if user is not None:
                    pipe.hget(keys.user(user), "ver")
            answers = iter(await pipe.execute())
        found = []
        for token_id, user in asks:
            revoked = bool(next(answers)) if token_id is not None else False
            found.append((revoked, next(answers) if user is not None else None))
        return found

    async def revoke(self, identity: Identity) -> None:
        """Refuse this token from now until it expires."""
        if identity.token_id is None:
            raise AuthError("this token has no id (jti), so it cannot be revoked")
        ttl = max(1, (identity.expires_at or int(time.time()) + 1) - int(time.time()))
        await self.redis.set(keys.revoked_token(identity.token_id), 1, ex=ttl)


def resolve_jwt_secret(server: ServerSettings, broker: BrokerSettings) -> str:
    """The configured HS256 secret, or the one kept in the data folder (created on first use).

    The file is created with ``O_EXCL`` so two processes starting together agree on one secret.
    A secret under :data:`MIN_SECRET_BYTES` is refused (:class:`WeakSecret`) unless the
    ``allow_weak_jwt_secret`` setting says this is a test.
    """
    if server.jwt_secret is not None and server.jwt_secret.get_secret_value():
        given = server.jwt_secret.get_secret_value()
        size = len(given.encode())
        if size < MIN_SECRET_BYTES and not server.allow_weak_jwt_secret:
            raise WeakSecret(
                f"VSTUDIO_JWT_SECRET has {size} bytes; it needs at least {MIN_SECRET_BYTES} bytes "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return given
    path = Path(broker.data_dir).expanduser() / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be writing it right now
            value = path.read_text().strip()
            if value:
                return value
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty; delete it to generate a new JWT secret") from None
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def mint_token(
    secret: str,
    *,
    user_id: str,
    role: Role | str,
    username: str | None = None,
    ttl: int = 3600,
    audience: str = "vstudio",
    issuer: str = "vstudio",
    extra: dict[str, Any] | None = None,
) -> str:
    """An HS256 token for ``user_id`` with ``role``, valid ``ttl`` seconds."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "name": username or user_id,
        "role": str(Role(role)),
        "aud": audience,
        "iss": issuer,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(12),
    }
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header, or :class:`AuthError`."""
    if not header:
        raise AuthError("missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    return token.strip()


class TokenVerifier:
    """Checks tokens for one server process: HS256 with the secret, or RS256 through JWKS."""

    def __init__(
        self, settings: ServerSettings, secret: str, revocations: Revocations | None = None
    ) -> None:
        self.settings = settings
        self.secret = secret
        self.revocations = revocations
        self.algorithm = settings.jwt_algorithm
        self._jwks = jwt.PyJWKClient(settings.jwks_url) if settings.jwks_url else None
        if self.algorithm == "RS256" and self._jwks is None:
            raise ValueError("jwt_algorithm RS256 needs jwks_url (VSTUDIO_JWKS_URL)")
        self._hs256_key: bytes | None = None
        if self.algorithm == "HS256" and self._jwks is None:
            try:  # a key PyJWT refuses (a PEM key, say) refuses every token: no fast path
                self._hs256_key = HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
            except jwt.PyJWTError:
                self._hs256_key = None

    def plain_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a plain HS256 token that PyJWT would accept, checked without it.

        PyJWT spent about 130 us of CPU per token (two parses, key checks, a claim pass), 8%
        of a reconnect storm's server CPU. This checks only the common shape (a header from
        :data:`PLAIN_HS256_HEADERS`, the signature in its canonical encoding, integer times,
        a string subject) and answers ``None`` for anything else, which then goes through
        PyJWT: so it accepts only tokens PyJWT accepts, and every refusal keeps its reason.
        """
        key = self._hs256_key
        header, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        if key is None or header not in PLAIN_HS256_HEADERS or not signature or "." in signature:
            return None
        mac = hmac.digest(key, f"{header}.{payload}".encode(), "sha256")
        if not hmac.compare_digest(urlsafe_b64encode(mac).rstrip(b"=").decode(), signature):
            return None
        try:
            claims = orjson.loads(base64url_decode(payload))
        except ValueError:  # bad base64 or JSON
            return None
        if not isinstance(claims, dict):
            return None
        now = time.time()
        exp, sub = claims.get("exp"), claims.get("sub")
        if type(exp) is not int or exp <= now or type(sub) is not str:
            return None
        for name in ("iat", "nbf"):
            if name in claims and (type(claims[name]) is not int or claims[name] > now):
                return None
        if claims.get("iss") != self.settings.jwt_issuer:
            return None
        aud, audience = claims.get("aud"), self.settings.jwt_audience
        if aud != audience and not (
            type(aud) is list and audience in aud and all(type(one) is str for one in aud)
        ):
            return None
        if "jti" in claims and type(claims["jti"]) is not str:
            return None
        return claims

    def mint(self, user_id: str, role: Role | str, **kwargs: Any) -> str:
        """A token this process accepts (HS256 only: RS256 tokens come from elsewhere)."""
        kwargs.setdefault("ttl", self.settings.token_ttl)
        return mint_token(
            self.secret,
            user_id=user_id,
            role=role,
            audience=self.settings.jwt_audience,
            issuer=self.settings.jwt_issuer,
            **kwargs,
        )

    async def verify(self, token: str) -> Identity:
        """The identity in ``token``, or :class:`AuthError` saying why it is refused."""
        claims = self.plain_claims(token)
        if claims is None:
            claims = await self._decode(token)
        try:
            role = Role(claims.get("role", Role.VIEWER))
        except ValueError as exc:
            raise AuthError(f"token role {claims.get('role')!r} is unknown") from exc
        if self.revocations is not None:
            await self.revocations.check(claims)
        subject = str(claims["sub"])
        token_id = claims.get("jti")
        return Identity(
            user_id=subject,
            username=str(claims.get("name") or subject),
            role=role,
            guest=bool(claims.get("guest", False)),
            session_id=claims.get("sid"),
            token_id=str(token_id) if token_id is not None else None,
            expires_at=int(claims["exp"]),
            operator=claims.get("operator") is True and not claims.get("guest", False),
        )

    async def _decode(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` checked by PyJWT, or :class:`AuthError` saying why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"token is not a JWT: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm != self.algorithm:
            raise AuthError(f"token algorithm {algorithm!r} is not accepted; use {self.algorithm}")
        key: Any = self.secret
        if self._jwks is not None and algorithm == "RS256":
            try:
                key = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
            except jwt.PyJWTError as exc:
                raise AuthError(f"no signing key for this token: {exc}") from exc
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(
                f"token audience is wrong; expected {self.settings.jwt_audience}"
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError(f"token issuer is wrong; expected {self.settings.jwt_issuer}") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("token signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"token refused: {exc}") from exc
        return claims
