"""Login tokens: JWTs signed HS256 with the shared secret, or RS256 checked against a JWKS URL.

Every server process and every restart must accept the same tokens, so when no secret is
configured one is generated once and kept in the data folder (mode 0600). Verification always
names the algorithms it accepts (so ``alg: none`` is refused), checks audience and issuer, and
turns every failure into :class:`AuthError` with a reason the caller can show as a 401.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from broker.models import Role
from config import BrokerSettings, ServerSettings

__all__ = [
    "AuthError",
    "Identity",
    "TokenVerifier",
    "bearer_token",
    "mint_token",
    "resolve_jwt_secret",
]

SECRET_FILE = "jwt_secret"


class AuthError(Exception):
    """A token was missing or refused; the message is the reason (HTTP 401)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid token says the caller is."""

    user_id: str
    username: str
    role: Role
    guest: bool = False
    session_id: str | None = None
    operator: bool = False
    """The token carries ``"operator": true``: it may announce to every session."""


def resolve_jwt_secret(server: ServerSettings, broker: BrokerSettings) -> str:
    """The configured HS256 secret, or the one kept in the data folder (created on first use).

    The file is created with ``O_EXCL`` so two processes starting together agree on one secret.
    """
    if server.jwt_secret is not None and server.jwt_secret.get_secret_value():
        return server.jwt_secret.get_secret_value()
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

    def __init__(self, settings: ServerSettings, secret: str) -> None:
        self.settings = settings
        self.secret = secret
        self.algorithm = settings.jwt_algorithm
        self._jwks = jwt.PyJWKClient(settings.jwks_url) if settings.jwks_url else None
        if self.algorithm == "RS256" and self._jwks is None:
            raise ValueError("jwt_algorithm RS256 needs jwks_url (VSTUDIO_JWKS_URL)")

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
        try:
            role = Role(claims.get("role", Role.VIEWER))
        except ValueError as exc:
            raise AuthError(f"token role {claims.get('role')!r} is unknown") from exc
        subject = str(claims["sub"])
        return Identity(
            user_id=subject,
            username=str(claims.get("name") or subject),
            role=role,
            guest=bool(claims.get("guest", False)),
            session_id=claims.get("sid"),
            operator=claims.get("operator") is True and not claims.get("guest", False),
        )
