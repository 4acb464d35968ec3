"""A wallet for tests: an ``eth-account`` key that signs in with Ethereum like a browser wallet.

wallet = Wallet.new()
await wallet.link(server, token)                 # nonce, personal_sign, verify
status, body = await wallet.verify(server, message, token=token)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from server.identity.siwe import build_message
from tests.support.live_server import LiveServer

__all__ = ["Wallet"]


@dataclass
class Wallet:
    account: LocalAccount

    @classmethod
    def new(cls) -> Wallet:
        return cls(Account.create())

    @property
    def address(self) -> str:
        return str(self.account.address)

    def sign(self, message: str) -> str:
        """``personal_sign`` (EIP-191) of ``message``, as ``0x`` hex."""
        signed = self.account.sign_message(encode_defunct(text=message))
        return "0x" + bytes(signed.signature).hex()

    def message(
        self,
        server: LiveServer,
        nonce: str,
        *,
        domain: str | None = None,
        chain_id: int = 1,
        issued_at: datetime | None = None,
        expires_in: float | None = 300,
    ) -> str:
        now = issued_at or datetime.now(UTC)
        return build_message(
            domain=domain or server.base_url.split("://", 1)[1],
            address=self.address,
            uri=server.base_url,
            chain_id=chain_id,
            nonce=nonce,
            issued_at=now,
            expiration_time=now + timedelta(seconds=expires_in) if expires_in is not None else None,
        )

    async def nonce(self, server: LiveServer) -> str:
        status, body = await server.call("POST", "/v1/auth/wallet/nonce", json={})
        assert status == 200, body
        return str(body["nonce"])

    async def verify(
        self,
        server: LiveServer,
        message: str,
        *,
        token: str | None = None,
        signature: str | None = None,
        source: str | None = None,
    ) -> tuple[int, Any]:
        return await server.call(
            "POST",
            "/v1/auth/wallet/verify",
            token=token,
            source=source,
            json={"message": message, "signature": signature or self.sign(message)},
        )

    async def link(self, server: LiveServer, token: str | None = None) -> dict[str, Any]:
        """Sign in with this wallet: link it to ``token``'s account (or a wallet-only user)."""
        message = self.message(server, await self.nonce(server))
        status, body = await self.verify(server, message, token=token)
        assert status == 200, body
        return dict(body)
