"""A local Ethereum JSON-RPC 2.0 node for tests: balances from a table the test controls.

It speaks the part of the protocol the token gate uses, as a real node answers it:
``eth_chainId`` and ``eth_blockNumber`` (hex quantities), ``eth_call`` whose ``data`` is
ABI calldata decoded by its 4-byte selector (``balanceOf(address)`` for ERC-20 and ERC-721,
``balanceOf(address,uint256)`` for ERC-1155, ``decimals()``), the answer ABI-encoded as a
32-byte word. Errors come in the JSON-RPC error shape (``{"error": {"code", "message"}}``);
a call to a contract the table does not know reverts as a node does (code 3,
``execution reverted``). ``delay`` holds every answer back (an RPC that is slow), ``down``
answers HTTP 503 (an RPC that is down), and ``calls`` counts the ``eth_call`` requests.

    async with EthNode(chain_id=1) as node:           # node.url is http://127.0.0.1:<port>
        node.erc20(TOKEN, decimals=6, balances={ALICE: 5 * 10**6})
        node.erc721(NFT, balances={BOB: 1})
        node.erc1155(ITEMS, balances={(ALICE, 7): 3})
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from tests.support.loopback import serve_app

__all__ = ["DECIMALS", "ERC20_BALANCE", "ERC1155_BALANCE", "Contract", "EthNode"]

ERC20_BALANCE = function_signature_to_4byte_selector("balanceOf(address)")
"""``0x70a08231``: ERC-20 and ERC-721 ``balanceOf(address)``."""
ERC1155_BALANCE = function_signature_to_4byte_selector("balanceOf(address,uint256)")
"""``0x00fdd58e``: ERC-1155 ``balanceOf(address,uint256)``."""
DECIMALS = function_signature_to_4byte_selector("decimals()")
"""``0x313ce567``: ERC-20 ``decimals()``."""

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
EXECUTION_REVERTED = 3


@dataclass
class Contract:
    """One token contract: its standard, decimals (ERC-20 only) and balances."""

    standard: str
    decimals: int | None = None
    balances: dict[Any, int] = field(default_factory=dict)
    """Address (lowercase) -> balance; for ERC-1155 (address, token id) -> balance."""


class RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class EthNode:
    """The node's state; serve it with ``async with``."""

    chain_id: int = 1
    block_number: int = 19_000_000
    delay: float = 0.0
    down: bool = False
    contracts: dict[str, Contract] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    """``eth_call`` requests by selector name (``balanceOf``, ``balanceOf1155``, ``decimals``)."""
    url: str = ""

    def erc20(self, address: str, *, decimals: int, balances: dict[str, int]) -> None:
        self.contracts[address.lower()] = Contract(
            "erc20", decimals, {owner.lower(): value for owner, value in balances.items()}
        )

    def erc721(self, address: str, *, balances: dict[str, int]) -> None:
        self.contracts[address.lower()] = Contract(
            "erc721", None, {owner.lower(): value for owner, value in balances.items()}
        )

    def erc1155(self, address: str, *, balances: dict[tuple[str, int], int]) -> None:
        self.contracts[address.lower()] = Contract(
            "erc1155",
            None,
            {(owner.lower(), tid): value for (owner, tid), value in balances.items()},
        )

    def set_balance(
        self, contract: str, owner: str, value: int, token_id: int | None = None
    ) -> None:
        key: Any = owner.lower() if token_id is None else (owner.lower(), token_id)
        self.contracts[contract.lower()].balances[key] = value

    @property
    def balance_calls(self) -> int:
        return self.calls["balanceOf"] + self.calls["balanceOf1155"]

    # --- the protocol ---------------------------------------------------------------------

    def _eth_call(self, params: list[Any]) -> str:
        if not params or not isinstance(params[0], dict):
            raise RpcFailure(INVALID_PARAMS, "eth_call needs a call object")
        call = params[0]
        to, data = str(call.get("to", "")).lower(), str(call.get("data") or call.get("input") or "")
        if not data.startswith("0x") or len(data) < 10:
            raise RpcFailure(INVALID_PARAMS, "invalid calldata")
        raw = bytes.fromhex(data[2:])
        selector, args = raw[:4], raw[4:]
        contract = self.contracts.get(to)
        if selector == ERC20_BALANCE:
            self.calls["balanceOf"] += 1
            (owner,) = decode(["address"], args)
            if contract is None or contract.standard == "erc1155":
                raise RpcFailure(EXECUTION_REVERTED, "execution reverted")
            return _word(contract.balances.get(owner.lower(), 0))
        if selector == ERC1155_BALANCE:
            self.calls["balanceOf1155"] += 1
            owner, token_id = decode(["address", "uint256"], args)
            if contract is None or contract.standard != "erc1155":
                raise RpcFailure(EXECUTION_REVERTED, "execution reverted")
            return _word(contract.balances.get((owner.lower(), token_id), 0))
        if selector == DECIMALS:
            self.calls["decimals"] += 1
            if contract is None or contract.decimals is None:
                raise RpcFailure(EXECUTION_REVERTED, "execution reverted")
            return "0x" + encode(["uint8"], [contract.decimals]).hex()
        self.calls["unknown"] += 1
        raise RpcFailure(EXECUTION_REVERTED, "execution reverted")

    def answer(self, request: Any) -> dict[str, Any]:
        """The JSON-RPC response to one request object."""
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
            return _error(None, INVALID_REQUEST, "invalid request")
        ident, method, params = request.get("id"), request.get("method"), request.get("params", [])
        try:
            if method == "eth_chainId":
                result: Any = hex(self.chain_id)
            elif method == "eth_blockNumber":
                result = hex(self.block_number)
            elif method == "eth_call":
                result = self._eth_call(params)
            else:
                raise RpcFailure(METHOD_NOT_FOUND, f"the method {method} does not exist")
        except RpcFailure as failure:
            return _error(ident, failure.code, failure.message)
        except Exception as exc:  # undecodable arguments, as a node reports them
            return _error(ident, INVALID_PARAMS, f"invalid params: {exc}")
        return {"jsonrpc": "2.0", "id": ident, "result": result}

    async def _handle(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            return web.Response(status=503, text="upstream unavailable")
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(_error(None, PARSE_ERROR, "parse error"))
        if isinstance(body, list):
            return web.json_response([self.answer(item) for item in body])
        return web.json_response(self.answer(body))

    async def __aenter__(self) -> EthNode:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._serving = serve_app(app)
        self.url = await self._serving.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._serving.__aexit__(None, None, None)


def _word(value: int) -> str:
    return "0x" + encode(["uint256"], [value]).hex()


def _error(ident: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "error": {"code": code, "message": message}}
