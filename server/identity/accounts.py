"""Accounts in Redis with argon2 password hashes, shared by every server process.

An account is a hash at ``vstudio:user:<username>`` with the user id, role and password hash.
Hashing is deliberately slow, so it runs in a thread and never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from broker import keys
from broker.bus import RawHash
from broker.models import Role

__all__ = ["Account", "AccountError", "AccountStore", "valid_username"]

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_hasher = PasswordHasher()


class AccountError(ValueError):
    """An account could not be created or the credentials were wrong."""


@dataclass(frozen=True, slots=True)
class Account:
    """A user as the server knows it (the password hash never leaves this module)."""

    user_id: str
    username: str
    role: Role

    def wire(self) -> dict[str, str]:
        return {"id": self.user_id, "username": self.username, "role": str(self.role)}


def valid_username(name: str) -> str:
    """``name`` if it is 1-64 letters, digits, ``_ . -``; else :class:`AccountError`."""
    if not USERNAME.match(name):
        raise AccountError(f"username {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return name


class AccountStore:
    """Create accounts and check passwords."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def add(
        self, username: str, password: str, role: Role, *, replace: bool = False
    ) -> Account:
        """Create (or with ``replace`` overwrite) an account; the user id is the username."""
        valid_username(username)
        if len(password) < 4:
            raise AccountError("password must have at least 4 characters")
        digest = await asyncio.to_thread(_hasher.hash, password)
        key = keys.user(username)
        if not replace and not await self.redis.hsetnx(key, "username", username):
            raise AccountError(f"user {username} exists already")
        await self.redis.hset(
            key, mapping={"id": username, "username": username, "role": str(role), "hash": digest}
        )
        return Account(username, username, Role(role))

    async def find(self, username: str) -> Account | None:
        """The account, or ``None``."""
        if not USERNAME.match(username):
            return None
        raw = cast(RawHash, await self.redis.hgetall(keys.user(username)))
        if not raw or b"role" not in raw:
            return None
        return Account(raw[b"id"].decode(), raw[b"username"].decode(), Role(raw[b"role"].decode()))

    async def check(self, username: str, password: str) -> Account:
        """The account if the password matches; one vague :class:`AccountError` otherwise."""
        refused = AccountError("unknown user or wrong password")
        if not USERNAME.match(username):
            raise refused
        digest = cast(bytes | None, await self.redis.hget(keys.user(username), "hash"))
        if digest is None:
            raise refused
        try:
            await asyncio.to_thread(_hasher.verify, digest.decode(), password)
        except (VerificationError, InvalidHashError):
            raise refused from None
        account = await self.find(username)
        if account is None:
            raise refused
        return account
