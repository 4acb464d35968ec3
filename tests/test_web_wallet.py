"""The page's "Connect wallet" in Chromium, with an injected EIP-1193 provider whose key is
an ``eth-account`` key held by the test (the page never sees it: ``personal_sign`` calls back
into the test, as a wallet extension signs outside the page)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.models import Role
from tests.support.ethrpc import EthNode
from tests.support.types import ServerFactory
from tests.support.wallet import Wallet
from tests.test_web_page import WAIT, accounts, browser, fans  # noqa: F401  # fixtures

pytestmark = pytest.mark.browser


def injected_provider(address: str) -> str:
    """window.ethereum for a wallet holding ``address`` (EIP-1193 ``request``)."""
    return f"""
        window.ethereum = {{
            isTestWallet: true,
            async request({{ method, params }}) {{
                if (method === "eth_requestAccounts" || method === "eth_accounts") {{
                    return ["{address}"];
                }}
                if (method === "eth_chainId") return "0x1";
                if (method === "personal_sign") {{
                    return await window.__testWalletSign(params[0], params[1]);
                }}
                throw Object.assign(new Error(`unsupported ${{method}}`), {{ code: 4200 }});
            }},
        }};
    """


async def wallet_fan(fans: Any, wallet: Wallet) -> Any:  # noqa: F811  # the fixture
    fan = await fans(init_script=injected_provider(wallet.address))

    def sign(data: str, address: str) -> str:
        assert address.lower() == wallet.address.lower()
        return wallet.sign(bytes.fromhex(data[2:]).decode())

    await fan.context.expose_function("__testWalletSign", sign)
    return fan


@pytest.fixture
async def node() -> AsyncIterator[EthNode]:
    async with EthNode(chain_id=1) as running:
        yield running


async def test_connect_wallet_opens_gated_polls_and_shows_the_4005_reason(
    server_factory: ServerFactory,
    node: EthNode,
    fans: Any,  # noqa: F811
    accounts: Any,  # noqa: F811
) -> None:
    server = server_factory(VSTUDIO_ETH_RPC_URL=node.url)
    nft = "0x" + secrets.token_hex(20)
    holder, stranger = Wallet.new(), Wallet.new()
    node.erc721(nft, balances={holder.address: 1})
    session = await server.live_session(requiredTokens={"contractAddress": nft, "minBalance": 1})
    sid, artist = session["id"], server.token(session["artistId"], "artist")
    url = f"{server.base_url}/s/{sid}"

    # a fan with an account connects a wallet that holds the token
    fan = await wallet_fan(fans, holder)
    name, password = await accounts(Role.VIEWER)
    await fan.open(url)
    await fan.sign_in(name, password)
    assert await fan.page.is_visible("#gate") and await fan.page.is_visible("#gate-locked")
    await fan.page.click("#connect-wallet")
    await fan.page.wait_for_selector("body[data-gate=open]", timeout=WAIT)
    await fan.wait_state("live")
    assert "gated polls are open to you" in (await fan.page.text_content("#gate-status") or "")

    # a wallet-only fan whose wallet holds nothing: signed in, refused the role, told why
    other = await wallet_fan(fans, stranger)
    await other.open(url)
    await other.page.click("#wallet-signin")
    await other.wait_state("live")
    await other.page.wait_for_selector("#gate-status:has-text('4005')", timeout=WAIT)
    reason = await other.page.text_content("#gate-status") or ""
    assert "is below the minimum 1" in reason and stranger.address.lower() in reason
    assert await other.page.is_visible("#gate-locked")

    status, poll = await server.call(
        "POST",
        f"/v1/vstudio/sessions/{sid}/polls",
        token=artist,
        json={"question": "Holders: which B-side?", "options": ["One", "Two"], "gated": True},
    )
    assert status == 200, poll
    question = "#poll .poll-question:text('Holders: which B-side?')"
    await fan.page.wait_for_selector(question, timeout=WAIT)
    assert await fan.page.is_visible("#poll-gated")
    await fan.page.click(".option[data-index='1']")
    await fan.page.wait_for_selector(".option[data-index='1'][aria-pressed=true]", timeout=WAIT)
    assert await other.page.is_visible(".poll-empty")  # the stranger never got the poll
    assert "Holders: which B-side?" not in await other.page.content()
