"""The gate's check of one wallet against a session's requirements: cached and single-flight.

A reconnect storm asks the same question thousands of times, so answers are kept in Redis per
(chain, contract, address[, token id]) for ``token_balance_ttl`` seconds, and ``decimals()``
per (chain, contract) for :data:`DECIMALS_TTL`; within one process concurrent askers of one
key share one lookup (single flight), so a storm costs one ``eth_call`` per key per process.
Failures are never cached and never pass: a node that is down or slow fails the check closed,
with a reason saying it could not be made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from broker import keys
from broker.models import TokenRequirement
from server.tokengate.abi import (
    MAX_DECIMALS,
    Check,
    Standard,
    Verdict,
    balance_call,
    decimals_call,
    decode_uint,
    judge,
)
from server.tokengate.rpc import CallReverted, EthRpc, RpcUnavailable

__all__ = ["DECIMALS_TTL", "TokenGate"]

DECIMALS_TTL = 3600
"""Seconds a token's ``decimals()`` (or that it has none) is remembered: it never changes."""


class TokenGate:
    """Balances read over :class:`EthRpc`, remembered in Redis, asked once per key at a time."""

    def __init__(
        self, client: aioredis.Redis, rpc: EthRpc, *, default_chain: int, balance_ttl: int
    ) -> None:
        self.redis = client
        self.rpc = rpc
        self.default_chain = default_chain
        self.balance_ttl = balance_ttl
        self._flights: dict[str, asyncio.Future[str]] = {}

    async def check(self, requirements: list[TokenRequirement], address: str) -> Verdict:
        """Each requirement checked for ``address`` (all at once); see :class:`Verdict`."""
        owner = address.lower()
        checks = await asyncio.gather(*(self._check(req, owner) for req in requirements))
        return judge(owner, list(checks))

    async def _check(self, requirement: TokenRequirement, owner: str) -> Check:
        chain = requirement.chain_id or self.default_chain
        try:
            standard, decimals = await self._kind(chain, requirement)
            balance = await self._balance(chain, requirement, owner)
        except (RpcUnavailable, ValueError) as exc:
            return Check(requirement, chain, error=str(exc))
        return Check(requirement, chain, standard, decimals, balance)

    async def _kind(self, chain: int, requirement: TokenRequirement) -> tuple[Standard, int]:
        """The token's standard and decimals: ERC-721 and ERC-1155 count whole items."""
        if requirement.token_id is not None or requirement.standard == "erc1155":
            return "erc1155", 0
        if requirement.standard == "erc721":
            return "erc721", 0
        contract = requirement.contract_address.lower()

        async def ask() -> str:
            try:
                decimals = decode_uint(await self.rpc.call(chain, contract, decimals_call()))
            except CallReverted:
                if requirement.standard == "erc20":
                    raise ValueError(
                        f"{contract} does not answer decimals(), so it is not an ERC-20 token"
                    ) from None
                return "erc721:0"  # no decimals(): counted in whole items, as ERC-721
            if decimals > MAX_DECIMALS:
                raise ValueError(f"{contract} says it has {decimals} decimals")
            return f"erc20:{decimals}"

        key = keys.token_decimals(chain, contract)
        answer = await self._once(key, DECIMALS_TTL, ask)
        standard, _, decimals = answer.partition(":")
        if requirement.standard == "erc20" and standard != "erc20":
            raise ValueError(f"{contract} does not answer decimals(), so it is not an ERC-20 token")
        return ("erc20" if standard == "erc20" else "erc721"), int(decimals)

    async def _balance(self, chain: int, requirement: TokenRequirement, owner: str) -> int:
        contract = requirement.contract_address.lower()
        token_id = requirement.token_id

        async def ask() -> str:
            try:
                result = await self.rpc.call(chain, contract, balance_call(owner, token_id))
            except CallReverted as exc:
                raise ValueError(
                    f"balanceOf reverted ({exc}): is {contract} a token contract on chain {chain}?"
                ) from None
            return str(decode_uint(result))

        key = keys.token_balance(chain, contract, owner, token_id)
        return int(await self._once(key, self.balance_ttl, ask))

    async def _once(self, key: str, ttl: int, ask: Callable[[], Awaitable[str]]) -> str:
        """The value at ``key``, else ``ask()`` stored for ``ttl`` s; one lookup per key here."""
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._cached(key, ttl, ask))
            self._flights[key] = flight
            flight.add_done_callback(lambda _: self._flights.pop(key, None))
        return await asyncio.shield(flight)

    async def _cached(self, key: str, ttl: int, ask: Callable[[], Awaitable[str]]) -> str:
        cached = await self.redis.get(key)
        if cached is not None:
            return cached.decode() if isinstance(cached, bytes) else str(cached)
        value = await ask()
        await self.redis.set(key, value, ex=ttl)
        return value
