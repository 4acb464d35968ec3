"""The local JSON-RPC node speaks Ethereum JSON-RPC 2.0 as the gate's tests need it."""

from __future__ import annotations

import aiohttp
from eth_abi import decode, encode

from tests.support.ethrpc import DECIMALS, ERC20_BALANCE, ERC1155_BALANCE, EthNode

TOKEN = "0x" + "11" * 20
ITEMS = "0x" + "22" * 20
ALICE = "0x" + "aa" * 20


async def rpc(url: str, method: str, params: list[object]) -> dict[str, object]:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        answer: dict[str, object] = await response.json()
        return answer


def call(to: str, data: bytes) -> list[object]:
    return [{"to": to, "data": "0x" + data.hex()}, "latest"]


async def test_chain_id_block_number_and_balances_by_selector() -> None:
    async with EthNode(chain_id=137) as node:
        node.erc20(TOKEN, decimals=6, balances={ALICE: 1_500_000})
        node.erc1155(ITEMS, balances={(ALICE, 7): 3})
        assert (await rpc(node.url, "eth_chainId", []))["result"] == "0x89"
        assert (await rpc(node.url, "eth_blockNumber", []))["id"] == 7
        answer = await rpc(
            node.url, "eth_call", call(TOKEN, ERC20_BALANCE + encode(["address"], [ALICE]))
        )
        assert decode(["uint256"], bytes.fromhex(str(answer["result"])[2:])) == (1_500_000,)
        answer = await rpc(node.url, "eth_call", call(TOKEN, DECIMALS))
        assert decode(["uint8"], bytes.fromhex(str(answer["result"])[2:])) == (6,)
        data = ERC1155_BALANCE + encode(["address", "uint256"], [ALICE, 7])
        answer = await rpc(node.url, "eth_call", call(ITEMS, data))
        assert decode(["uint256"], bytes.fromhex(str(answer["result"])[2:])) == (3,)
        assert node.balance_calls == 2 and node.calls["decimals"] == 1


async def test_errors_come_in_the_json_rpc_shape() -> None:
    async with EthNode() as node:
        unknown = await rpc(node.url, "eth_sendTransaction", [])
        assert unknown["error"] == {
            "code": -32601,
            "message": "the method eth_sendTransaction does not exist",
        }
        reverted = await rpc(node.url, "eth_call", call(TOKEN, DECIMALS))
        assert reverted["error"] == {"code": 3, "message": "execution reverted"}
        node.down = True
        async with aiohttp.ClientSession() as http, http.post(node.url, json={}) as response:
            assert response.status == 503
