"""Wallets linked to accounts, and the single-use nonces of Sign-In with Ethereum.

A nonce is a Redis key with a TTL, deleted by the one verify that uses it (``DEL`` answers 1
to exactly one caller across every process), so a replayed message finds it gone. A link is
one address per account and one account per address, both ways in one script: linking a wallet
that was another account's moves it (whoever signed holds the key now). Every link key carries
the hash tag ``{wallets}``, so that script works on a Redis Cluster too.
"""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis

from broker import keys
from broker.scripts import Script

__all__ = ["WalletStore"]

LINK_SCRIPT = """
-- KEYS[1] wallet_of(user), KEYS[2] wallet_owner(address), KEYS[3] wallet_owner(the account's
-- address seen before), KEYS[4] wallet_of(the address's account seen before): every key the
-- script may touch is named, as a cluster asks. ARGV[1] user, ARGV[2] address, ARGV[3] and
-- ARGV[4] the two links as read before ('' for none). False if either changed since: the
-- caller reads again and retries; else the account the address was moved from ('' if none).
local before = redis.call('GET', KEYS[1]) or ''
local owner = redis.call('GET', KEYS[2]) or ''
if before ~= ARGV[3] or owner ~= ARGV[4] then return false end
if before ~= '' and before ~= ARGV[2] then redis.call('DEL', KEYS[3]) end
if owner ~= '' and owner ~= ARGV[1] then redis.call('DEL', KEYS[4]) end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
return owner
"""

LINK_ATTEMPTS = 16
"""Reads and scripts one link may take while other links of the same account or address race
it (each retry means another link landed in between)."""


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class WalletStore:
    """Nonces and links, in Redis so every server process agrees."""

    def __init__(self, client: aioredis.Redis, nonce_ttl: int) -> None:
        self.redis = client
        self.nonce_ttl = nonce_ttl
        self._link = Script(client, LINK_SCRIPT)

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
        """Link ``address`` (lowercased) to ``user_id``; the account it was moved from, if any.

        The stale ends to drop are read first and named to the script as keys (a script may
        not build key names on a cluster); the script checks they are still what was read."""
        address = address.lower()
        here, there = keys.wallet_of(user_id), keys.wallet_owner(address)
        for _ in range(LINK_ATTEMPTS):
            before, owner = (_text(value) or "" for value in await self.redis.mget(here, there))
            moved = await self._link(
                keys=[here, there, keys.wallet_owner(before), keys.wallet_of(owner)],
                args=[user_id, address, before, owner],
            )
            if moved is not None:
                return _text(moved) or None
        raise RuntimeError(f"linking {address} kept racing other links; try again")

    async def address_of(self, user_id: str) -> str | None:
        return _text(await self.redis.get(keys.wallet_of(user_id)))

    async def owner_of(self, address: str) -> str | None:
        return _text(await self.redis.get(keys.wallet_owner(address)))
