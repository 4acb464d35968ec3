"""``eth_call`` over Ethereum JSON-RPC 2.0, bounded in time: a slow node is a failed check.

One aiohttp session per process; every call has a total timeout (``eth_rpc_timeout``), so a
node that hangs costs a ticket request that long at most and never blocks anything else.
Every failure (refused connection, timeout, HTTP error, a JSON-RPC ``error``, an answer that
is not JSON) is :class:`RpcUnavailable` with a reason a person can act on; a revert is
:class:`CallReverted` (the contract exists but does not answer that function).
"""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp

__all__ = ["CallReverted", "EthRpc", "RpcUnavailable"]


class RpcUnavailable(Exception):
    """The node could not answer; the message says why."""


class CallReverted(Exception):
    """The node answered with an execution error: the contract does not serve this call."""


class EthRpc:
    """A JSON-RPC client for the chains configured, by chain id."""

    def __init__(self, urls: dict[int, str], timeout: float) -> None:
        self.urls = dict(urls)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._ids = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None

    def has_chain(self, chain_id: int) -> bool:
        return chain_id in self.urls

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def request(self, chain_id: int, method: str, params: list[Any]) -> Any:
        """The ``result`` of one JSON-RPC call on ``chain_id``'s node."""
        url = self.urls.get(chain_id)
        if url is None:
            raise RpcUnavailable(f"no Ethereum RPC URL is configured for chain {chain_id}")
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self.timeout)
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        seconds = self.timeout.total
        try:
            async with self._http.post(url, json=body) as response:
                if response.status != 200:
                    raise RpcUnavailable(
                        f"the Ethereum RPC for chain {chain_id} answered HTTP {response.status}"
                    )
                answer = await response.json(content_type=None)
        except TimeoutError as exc:
            raise RpcUnavailable(
                f"the Ethereum RPC for chain {chain_id} did not answer within {seconds:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise RpcUnavailable(
                f"the Ethereum RPC for chain {chain_id} is unreachable ({type(exc).__name__})"
            ) from exc
        except ValueError as exc:
            raise RpcUnavailable(
                f"the Ethereum RPC for chain {chain_id} answered something that is not JSON"
            ) from exc
        if not isinstance(answer, dict):
            raise RpcUnavailable(f"the Ethereum RPC for chain {chain_id} answered no object")
        error = answer.get("error")
        if error is not None:
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            code = error.get("code") if isinstance(error, dict) else None
            if code == 3 or "revert" in str(message).lower():
                raise CallReverted(str(message) or "execution reverted")
            raise RpcUnavailable(
                f"the Ethereum RPC for chain {chain_id} refused the call: {message} ({code})"
            )
        if "result" not in answer:
            raise RpcUnavailable(f"the Ethereum RPC for chain {chain_id} answered no result")
        return answer["result"]

    async def call(self, chain_id: int, to: str, data: str) -> Any:
        """``eth_call`` of ``data`` on contract ``to`` at the latest block."""
        return await self.request(chain_id, "eth_call", [{"to": to, "data": data}, "latest"])
