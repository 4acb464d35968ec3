"""The ``token_holder`` role over a real server: tickets granted by on-chain balances only."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from broker.models import ErrorCode
from tests.support.ethrpc import EthNode
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory
from tests.support.wallet import Wallet


def address() -> str:
    return "0x" + secrets.token_hex(20)


@pytest.fixture
async def node() -> AsyncIterator[EthNode]:
    async with EthNode(chain_id=1) as running:
        yield running


def gated_server(factory: ServerFactory, node: EthNode, **env: str) -> LiveServer:
    return factory(VSTUDIO_ETH_RPC_URL=node.url, **env)


async def holder_ticket(
    server: LiveServer, token: str, session_id: str
) -> tuple[int, dict[str, Any]]:
    status, body = await server.call(
        "POST",
        "/v1/vstudio/ticket",
        token=token,
        json={"sessionId": session_id, "role": "token_holder"},
    )
    return status, body


async def linked_user(server: LiveServer, name: str) -> tuple[str, Wallet]:
    token, wallet = server.token(name), Wallet.new()
    await wallet.link(server, token)
    return token, wallet


async def test_a_holder_is_granted_and_a_non_holder_gets_4005(
    server_factory: ServerFactory, node: EthNode
) -> None:
    server = gated_server(server_factory, node)
    token_contract = address()
    session = await server.live_session(
        requiredTokens={"contractAddress": token_contract, "minBalance": 100}
    )
    holder_token, holder = await linked_user(server, "holder-1")
    other_token, other = await linked_user(server, "fan-1")
    node.erc20(token_contract, decimals=18, balances={holder.address: 100 * 10**18})

    status, body = await holder_ticket(server, holder_token, session["id"])
    assert status == 200 and body["role"] == "token_holder", body
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.ws_url}?ticket={body['ticket']}") as ws:
            state = await ws.receive_json()
            assert state["type"] == "session.state"
            assert state["payload"]["holderCount"] == 1  # for the console

    status, body = await holder_ticket(server, other_token, session["id"])
    assert status == 403 and body["code"] == ErrorCode.TOKEN_GATE_FAILED
    assert "is below the minimum 100" in body["message"]
    assert other.address.lower() in body["message"]

    status, body = await holder_ticket(server, server.token("no-wallet"), session["id"])
    assert status == 403 and body["code"] == 4005 and "no wallet is linked" in body["message"]
    plain = await server.live_session()
    status, body = await holder_ticket(server, holder_token, plain["id"])
    assert status == 403 and "requires no tokens" in body["message"]


async def test_every_requirement_counts_and_the_header_method_is_gated_too(
    server_factory: ServerFactory, node: EthNode
) -> None:
    server = gated_server(server_factory, node)
    coin, nft, items = address(), address(), address()
    session = await server.live_session(
        requiredTokens=[
            {"contractAddress": coin, "minBalance": 2.5},
            {"contractAddress": nft, "minBalance": 1},
            {"contractAddress": items, "minBalance": 3, "tokenId": 42},
        ]
    )
    token, wallet = await linked_user(server, "holder-many")
    node.erc20(coin, decimals=6, balances={wallet.address: 2_500_000})  # exactly the minimum
    node.erc721(nft, balances={wallet.address: 1})
    node.erc1155(items, balances={(wallet.address, 42): 2})
    status, body = await holder_ticket(server, token, session["id"])
    assert (
        status == 403 and items.lower() in body["message"] and coin.lower() not in body["message"]
    )
    url = f"{server.ws_url}?sessionId={session['id']}&role=token_holder"
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.ws_connect(url, headers=headers) as ws:
            closed = await ws.receive()
            assert ws.close_code == ErrorCode.TOKEN_GATE_FAILED, closed
    node.set_balance(items, wallet.address, 3, token_id=42)
    token2, wallet2 = await linked_user(server, "holder-many-2")
    node.set_balance(coin, wallet2.address, 2_500_000)
    node.set_balance(nft, wallet2.address, 1)
    node.set_balance(items, wallet2.address, 3, token_id=42)
    status, body = await holder_ticket(server, token2, session["id"])
    assert status == 200, body
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token2}"}
        async with http.ws_connect(url, headers=headers) as ws:
            state = await ws.receive_json()
            assert state["type"] == "session.state"


async def test_a_holder_whose_balance_drops_loses_the_role_at_the_next_ticket(
    server_factory: ServerFactory, node: EthNode
) -> None:
    server = gated_server(server_factory, node, VSTUDIO_TOKEN_BALANCE_TTL="1")
    nft = address()
    session = await server.live_session(requiredTokens={"contractAddress": nft, "minBalance": 1})
    token, wallet = await linked_user(server, "seller")
    node.erc721(nft, balances={wallet.address: 1})
    assert (await holder_ticket(server, token, session["id"]))[0] == 200
    node.set_balance(nft, wallet.address, 0)  # sold it
    await asyncio.sleep(1.1)
    status, body = await holder_ticket(server, token, session["id"])
    assert status == 403 and body["code"] == 4005 and "balance 0" in body["message"]


async def test_a_node_that_is_down_or_slow_fails_closed(
    server_factory: ServerFactory, node: EthNode
) -> None:
    server = gated_server(server_factory, node, VSTUDIO_ETH_RPC_TIMEOUT="0.5")
    coin = address()
    session = await server.live_session(requiredTokens={"contractAddress": coin, "minBalance": 1})
    token, wallet = await linked_user(server, "holder-outage")
    node.erc20(coin, decimals=18, balances={wallet.address: 10**19})
    node.down = True
    status, body = await holder_ticket(server, token, session["id"])
    assert status == 403 and body["code"] == 4005
    assert "could not be made" in body["message"] and "HTTP 503" in body["message"]
    node.down, node.delay = False, 3.0
    started = time.monotonic()
    status, body = await holder_ticket(server, token, session["id"])
    assert time.monotonic() - started < 2.0  # bounded: no hang
    assert status == 403 and "did not answer within 0.5 s" in body["message"]
    node.delay = 0.0
    assert (await holder_ticket(server, token, session["id"]))[0] == 200


@pytest.mark.slow
async def test_a_storm_of_1000_tickets_makes_a_handful_of_rpc_calls(
    server_factory: ServerFactory, node: EthNode
) -> None:
    server = gated_server(server_factory, node, workers=2, VSTUDIO_TICKET_RATE_LIMIT="1000")
    coin = address()
    session = await server.live_session(requiredTokens={"contractAddress": coin, "minBalance": 1})
    users = [await linked_user(server, f"storm-{n}") for n in range(4)]
    node.erc20(coin, decimals=18, balances={wallet.address: 10**18 for _, wallet in users})
    body = {"sessionId": session["id"], "role": "token_holder"}
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(n: int) -> int:
            headers = {"Authorization": f"Bearer {users[n % len(users)][0]}"}
            url = server.base_url + "/v1/vstudio/ticket"
            async with http.post(url, json=body, headers=headers) as response:
                return response.status

        statuses = await asyncio.gather(*(one(n) for n in range(1000)))
    assert statuses.count(200) == 1000
    # one balanceOf per wallet per process at most, and decimals() once per process at most
    assert node.balance_calls <= len(users) * 2, node.calls
    assert node.calls["decimals"] <= 2, node.calls
