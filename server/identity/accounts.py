"""Accounts in Redis with argon2 password hashes, shared by every server process.

An account is a hash at ``vstudio:user:<username>`` with the user id, role, password hash and
a version. Login tokens carry the version; replacing the account or its password raises it and
deleting the account removes it, so older tokens are refused at once on every process.
Hashing is deliberately slow, so it runs in a thread and never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
from dataclasses import dataclass, field
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
PASSWORD_MIN_LENGTH = 10
"""The default of the ``password_min_length`` setting."""


@functools.cache
def _decoy_hash() -> str:
    """A hash no password matches, checked for unknown users so they cost what known ones do."""
    return _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """An account could not be created or the credentials were wrong."""


@dataclass(frozen=True, slots=True)
class Account:
    """A user as the server knows it (the password hash never leaves this module)."""

    user_id: str
    username: str
    role: Role
    version: int = field(default=0, compare=False)
    """Raised on every change that must end older tokens (their ``vstudio_ver`` claim)."""

    def wire(self) -> dict[str, str]:
        return {"id": self.user_id, "username": self.username, "role": str(self.role)}


def valid_username(name: str) -> str:
    """``name`` if it is 1-64 letters, digits, ``_ . -``; else :class:`AccountError`."""
    if not USERNAME.match(name):
        raise AccountError(f"username {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return name


def _check_length(password: str, min_length: int) -> None:
    if len(password) < min_length:
        raise AccountError(
            f"password must have at least {min_length} characters (it has {len(password)})"
        )


class AccountStore:
    """Create accounts and check passwords."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def add(
        self,
        username: str,
        password: str,
        role: Role,
        *,
        replace: bool = False,
        min_length: int = PASSWORD_MIN_LENGTH,
    ) -> Account:
        """Create (or with ``replace`` overwrite, ending older tokens) an account; the user id is
        the username."""
        valid_username(username)
        _check_length(password, min_length)
        digest = await asyncio.to_thread(_hasher.hash, password)
        key = keys.user(username)
        if not replace and not await self.redis.hsetnx(key, "username", username):
            raise AccountError(f"user {username} exists already")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={"id": username, "username": username, "role": str(role), "hash": digest},
            )
            pipe.hincrby(key, "ver", 1)
            _, version = await pipe.execute()
        return Account(username, username, Role(role), int(version))

    async def set_password(
        self, username: str, password: str, *, min_length: int = PASSWORD_MIN_LENGTH
    ) -> Account:
        """A new password for an existing account; its older tokens stop working."""
        _check_length(password, min_length)
        account = await self.find(username)
        if account is None:
            raise AccountError(f"no user {username}")
        digest = await asyncio.to_thread(_hasher.hash, password)
        key = keys.user(username)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "hash", digest)
            pipe.hincrby(key, "ver", 1)
            _, version = await pipe.execute()
        return Account(account.user_id, account.username, account.role, int(version))

    async def delete(self, username: str) -> bool:
        """Remove the account (its tokens stop working); whether there was one."""
        if not USERNAME.match(username):
            return False
        return bool(await self.redis.delete(keys.user(username)))

    async def find(self, username: str) -> Account | None:
        """The account, or ``None``."""
        if not USERNAME.match(username):
            return None
        raw = cast(RawHash, await self.redis.hgetall(keys.user(username)))
        if not raw or b"role" not in raw:
            return None
        return Account(
            raw[b"id"].decode(),
            raw[b"username"].decode(),
            Role(raw[b"role"].decode()),
            int(raw.get(b"ver", b"0")),
        )

    async def check(self, username: str, password: str) -> Account:
        """The account if the password matches; one vague :class:`AccountError` otherwise."""
        refused = AccountError("unknown user or wrong password")
        digest = None
        if USERNAME.match(username):
            digest = cast(bytes | None, await self.redis.hget(keys.user(username), "hash"))
        # an unknown user costs the same argon2 check as a known one, so the time a refusal
        # takes does not tell which usernames exist
        stored = digest.decode() if digest is not None else await asyncio.to_thread(_decoy_hash)
        try:
            await asyncio.to_thread(_hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            raise refused from None
        if digest is None:
            raise refused
        account = await self.find(username)
        if account is None:
            raise refused
        return account
