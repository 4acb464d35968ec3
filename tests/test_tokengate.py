"""The token gate against a local JSON-RPC node: decimals, standards, failures, the cache."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from broker.bus import Bus
from broker.models import TokenRequirement
from server.tokengate.abi import required_units, whole_tokens
from server.tokengate.gate import TokenGate
from server.tokengate.rpc import EthRpc
from tests.support.ethrpc import EthNode


def address() -> str:
    return "0x" + secrets.token_hex(20)


def need(contract: str, minimum: float, **extra: object) -> TokenRequirement:
    return TokenRequirement.model_validate(
        {"contractAddress": contract, "minBalance": minimum, **extra}
    )


@pytest.fixture
async def node() -> AsyncIterator[EthNode]:
    async with EthNode(chain_id=1) as running:
        yield running


@pytest.fixture
async def gate(node: EthNode, bus: Bus) -> AsyncIterator[TokenGate]:
    rpc = EthRpc({1: node.url}, timeout=0.5)
    try:
        yield TokenGate(bus.redis, rpc, default_chain=1, balance_ttl=30)
    finally:
        await rpc.close()


def test_min_balance_is_whole_tokens_scaled_by_decimals() -> None:
    assert required_units(1.5, 6) == 1_500_000
    assert required_units(0.1, 18) == 10**17  # the written 0.1, not the float just above it
    assert required_units(2, 18) == 2 * 10**18
    assert required_units(0.0000001, 6) == 1  # finer than the token's unit: rounded up
    assert required_units(3, 0) == 3
    assert whole_tokens(1_500_000, 6) == "1.5" and whole_tokens(7, 0) == "7"


@pytest.mark.parametrize("decimals", [6, 18])
async def test_erc20_balance_exactly_at_the_minimum_passes(
    node: EthNode, gate: TokenGate, decimals: int
) -> None:
    token, holder, short = address(), address(), address()
    unit = 10**decimals
    node.erc20(token, decimals=decimals, balances={holder: 3 * unit // 2, short: 3 * unit // 2 - 1})
    passed = await gate.check([need(token, 1.5)], holder)
    assert passed.passed, passed.reason
    assert passed.checks[0].standard == "erc20" and passed.checks[0].decimals == decimals
    refused = await gate.check([need(token, 1.5)], short)
    assert not refused.passed
    assert "is below the minimum 1.5" in refused.reason and short in refused.reason


async def test_erc721_counts_items(node: EthNode, gate: TokenGate) -> None:
    nft, holder, other = address(), address(), address()
    node.erc721(nft, balances={holder: 1})
    assert (await gate.check([need(nft, 1)], holder)).passed
    verdict = await gate.check([need(nft, 1)], other)
    assert not verdict.passed and verdict.checks[0].standard == "erc721"
    assert node.calls["decimals"] == 1  # asked once, remembered that it has none


async def test_erc1155_asks_the_balance_of_the_named_id(node: EthNode, gate: TokenGate) -> None:
    items, holder = address(), address()
    node.erc1155(items, balances={(holder, 7): 2, (holder, 8): 5})
    assert (await gate.check([need(items, 2, tokenId=7)], holder)).passed
    assert not (await gate.check([need(items, 3, tokenId=7)], address())).passed
    assert not (await gate.check([need(items, 1, tokenId=9)], holder)).passed
    assert node.calls["decimals"] == 0 and node.calls["balanceOf1155"] == 3


async def test_every_requirement_must_pass(node: EthNode, gate: TokenGate) -> None:
    token, nft, holder = address(), address(), address()
    node.erc20(token, decimals=18, balances={holder: 10**18})
    node.erc721(nft, balances={})
    verdict = await gate.check([need(token, 1), need(nft, 1, standard="erc721")], holder)
    assert not verdict.passed
    assert [check.passed for check in verdict.checks] == [True, False]
    assert nft in verdict.reason and token not in verdict.reason
    node.set_balance(nft, holder, 1)
    assert not (await gate.check([need(token, 1), need(nft, 1)], holder)).passed  # cached 0
    await gate.redis.delete(*[key async for key in gate.redis.scan_iter(f"*{nft}*balance*")])
    assert (await gate.check([need(token, 1), need(nft, 1)], holder)).passed


async def test_a_node_that_is_down_fails_closed(node: EthNode, gate: TokenGate) -> None:
    token, holder = address(), address()
    node.erc20(token, decimals=6, balances={holder: 10**9})
    node.down = True
    verdict = await gate.check([need(token, 1)], holder)
    assert not verdict.passed
    assert "could not be made" in verdict.reason and "HTTP 503" in verdict.reason
    node.down = False  # failures are not cached: the next ticket asks again
    assert (await gate.check([need(token, 1)], holder)).passed


async def test_a_slow_node_fails_closed_within_the_timeout(node: EthNode, gate: TokenGate) -> None:
    token, holder = address(), address()
    node.erc20(token, decimals=6, balances={holder: 10**9})
    node.delay = 1.5
    started = time.monotonic()
    verdict = await gate.check([need(token, 1)], holder)
    assert time.monotonic() - started < 1.2
    assert not verdict.passed and "did not answer within 0.5 s" in verdict.reason


async def test_unknown_chain_and_non_token_contracts_fail_closed(
    node: EthNode, gate: TokenGate
) -> None:
    holder = address()
    verdict = await gate.check([need(address(), 1, chainId=137)], holder)
    assert "no Ethereum RPC URL is configured for chain 137" in verdict.reason
    verdict = await gate.check([need(address(), 1, standard="erc20")], holder)
    assert "not an ERC-20 token" in verdict.reason and not verdict.passed


async def test_a_storm_of_checks_makes_one_call_per_key(node: EthNode, gate: TokenGate) -> None:
    token, holder = address(), address()
    node.erc20(token, decimals=18, balances={holder: 10**18})
    verdicts = await asyncio.gather(*(gate.check([need(token, 1)], holder) for _ in range(1000)))
    assert all(verdict.passed for verdict in verdicts)
    assert node.calls["balanceOf"] == 1 and node.calls["decimals"] == 1
    other = TokenGate(gate.redis, gate.rpc, default_chain=1, balance_ttl=30)  # another process
    assert (await other.check([need(token, 1)], holder)).passed
    assert node.calls["balanceOf"] == 1  # read from Redis


def test_the_selectors_are_the_functions_keccak_prefixes() -> None:
    from eth_utils import function_signature_to_4byte_selector as selector

    from server.tokengate import abi

    assert abi.BALANCE_OF == selector("balanceOf(address)")
    assert abi.BALANCE_OF_ID == selector("balanceOf(address,uint256)")
    assert abi.DECIMALS == selector("decimals()")


def test_a_server_without_token_checks_does_not_load_the_eth_libraries() -> None:
    import subprocess
    import sys

    probe = "import sys, server.app; print(sorted(m for m in sys.modules if m.startswith('eth')))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
