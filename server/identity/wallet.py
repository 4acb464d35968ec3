"""Wallets linked to accounts, and the single-use nonces of Sign-In with Ethereum.

A nonce is a Redis key with a TTL, deleted by the one verify that uses it (``DEL`` answers 1
to exactly one caller across every process), so a replayed message finds it gone. A link is
one address per account and one account per address, both ways in one script: linking a wallet
that was another account's moves it (whoever signed holds the key now).
"""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis

from broker import keys

__all__ = ["WalletStore"]

LINK_SCRIPT = """
-- KEYS[1] wallet_of(user), KEYS[2] wallet_owner(address); ARGV[1] user, ARGV[2] address,
-- ARGV[3] prefix of wallet_owner keys, ARGV[4] prefix of wallet_of keys
local before = redis.call('GET', KEYS[1])
if before and before ~= ARGV[2] then redis.call('DEL', ARGV[3] .. before) end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then redis.call('DEL', ARGV[4] .. owner) end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
return owner or ''
"""


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class WalletStore:
    """Nonces and links, in Redis so every server process agrees."""

    def __init__(self, client: aioredis.Redis, nonce_ttl: int) -> None:
        self.redis = client
        self.nonce_ttl = nonce_ttl
        self._link = client.register_script(LINK_SCRIPT)

    async def issue_nonce(self) -> str:
        """A fresh nonce (EIP-4361: at least 8 alphanumeric characters) valid ``nonce_ttl`` s."""
        nonce = secrets.token_hex(16)
        await self.redis.set(keys.wallet_nonce(nonce), 1, ex=self.nonce_ttl)
        return nonce

    async def nonce_is_fresh(self, nonce: str) -> bool:
        return bool(await self.redis.exists(keys.wallet_nonce(nonce)))

    async def use_nonce(self, nonce: str) -> bool:
        """Spend the nonce; ``False`` if it was unknown, expired or spent already."""
        return bool(await self.redis.delete(keys.wallet_nonce(nonce)))

    async def link(self, user_id: str, address: str) -> str | None:
        """Link ``address`` (lowercased) to ``user_id``; the account it was moved from, if any."""
        address = address.lower()
        moved = await self._link(
            keys=[keys.wallet_of(user_id), keys.wallet_owner(address)],
            args=[user_id, address, keys.wallet_owner(""), keys.wallet_of("")],
        )
        return _text(moved) or None

    async def address_of(self, user_id: str) -> str | None:
        return _text(await self.redis.get(keys.wallet_of(user_id)))

    async def owner_of(self, address: str) -> str | None:
        return _text(await self.redis.get(keys.wallet_owner(address)))
