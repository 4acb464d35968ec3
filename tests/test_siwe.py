"""Sign-In with Ethereum: the EIP-4361 parser field by field, the rules, and the HTTP flow."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from eth_utils import to_checksum_address

from broker import connect
from server.identity.siwe import SiweError, check_message, parse_message, recover_signer
from server.identity.wallet import WalletStore
from tests.support.live_server import LiveServer
from tests.support.wallet import Wallet

ADDRESS = to_checksum_address("0xc0ffee254729296a45a3885639ac7e10f9d54979")
NOT_CHECKSUMMED = "0x" + ADDRESS[2:].swapcase()
NOW = datetime(2026, 1, 2, 3, 0, 0, 100000, tzinfo=UTC)
FULL = f"""example.com wants you to sign in with your Ethereum account:
{ADDRESS}

Sign in to V Studio.

URI: https://example.com/login
Version: 1
Chain ID: 137
Nonce: abcdef0123456789
Issued At: 2026-01-02T03:00:00Z
Expiration Time: 2026-01-02T04:00:00.500+01:00
Not Before: 2026-01-02T02:59:00Z
Request ID: req-7
Resources:
- ipfs://bafybei
- https://example.com/terms"""


def test_every_field_is_read() -> None:
    message = parse_message(FULL)
    assert message.domain == "example.com"
    assert message.address == ADDRESS
    assert message.statement == "Sign in to V Studio."
    assert message.uri == "https://example.com/login"
    assert message.version == "1"
    assert message.chain_id == 137
    assert message.nonce == "abcdef0123456789"
    assert message.issued_at == datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    assert message.expiration_time == datetime(2026, 1, 2, 3, 0, 0, 500000, tzinfo=UTC)
    assert message.not_before == datetime(2026, 1, 2, 2, 59, tzinfo=UTC)
    assert message.request_id == "req-7"
    assert message.resources == ("ipfs://bafybei", "https://example.com/terms")


def test_the_statement_and_optional_fields_may_be_left_out() -> None:
    text = "\n".join(line for line in FULL.splitlines() if "Sign in to" not in line)
    text = text.split("Expiration Time")[0] + "\n"
    message = parse_message(text)
    assert message.statement is None and message.expiration_time is None
    assert message.not_before is None and message.resources == ()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (("wants you to sign in", "wants you to log in"), "not a Sign-In with Ethereum message"),
        ((ADDRESS, ADDRESS[:-1]), "is malformed: it must be 0x and 40 hex digits"),
        ((ADDRESS, "0xZZ" + ADDRESS[4:]), "40 hex digits"),
        ((ADDRESS, NOT_CHECKSUMMED), "not EIP-55 checksummed"),
        (("example.com wants", "exa mple.com wants"), "domain 'exa mple.com' is malformed"),
        (("URI: https://example.com/login\n", ""), "the field URI is missing"),
        (("Version: 1", "Version: 2"), "Version '2' is not 1"),
        (("Chain ID: 137", "Chain ID: polygon"), "Chain ID 'polygon' is not a number"),
        (("Nonce: abcdef0123456789", "Nonce: short"), "at least 8 letters and digits"),
        (("Nonce: abcdef0123456789\n", ""), "the field Nonce is missing"),
        (("Issued At: 2026-01-02T03:00:00Z", "Issued At: yesterday"), "Issued At 'yesterday'"),
        (("2026-01-02T04:00:00.500+01:00", "2026-01-02T04:00:00"), "Expiration Time"),
        (("Not Before: 2026-01-02T02:59:00Z", "Not Before: 2026-13-40T02:59:00Z"), "Not Before"),
        (("Request ID: req-7", "Request ID: req-7\nRequest ID: again"), "appears twice"),
        (("Request ID: req-7", "Favourite Colour: blue"), "not a field of EIP-4361"),
        (("- ipfs://bafybei", "ipfs://bafybei"), "is not a resource"),
    ],
)
def test_each_malformed_field_is_named(change: tuple[str, str], reason: str) -> None:
    with pytest.raises(SiweError, match=reason):
        parse_message(FULL.replace(*change, 1))


def test_the_rules_domain_chain_and_time_window() -> None:
    message = parse_message(FULL)
    ok = {"domain": "example.com", "chain_ids": frozenset({137}), "now": NOW}
    check_message(message, **ok)  # type: ignore[arg-type]  # the keyword types are right
    for name, value, reason in [
        ("domain", "evil.example", "not for this server"),
        ("chain_ids", frozenset({1}), "chain 137 is not allowed"),
        ("now", NOW + timedelta(hours=2), "expired"),
        ("now", datetime(2026, 1, 2, 2, 58, tzinfo=UTC), "issued in the future"),
    ]:
        with pytest.raises(SiweError, match=reason):
            check_message(message, **{**ok, name: value})  # type: ignore[arg-type]
    early = parse_message(
        FULL.replace("Issued At: 2026-01-02T03:00:00Z", "Issued At: 2026-01-02T02:58:30Z")
    )
    with pytest.raises(SiweError, match="not valid before"):
        check_message(early, **{**ok, "now": datetime(2026, 1, 2, 2, 58, 45, tzinfo=UTC)})  # type: ignore[arg-type]


def test_the_signer_is_recovered_with_eth_account() -> None:
    wallet = Wallet.new()
    assert recover_signer("hello", wallet.sign("hello")) == wallet.address
    assert recover_signer("hello!", wallet.sign("hello")) != wallet.address
    with pytest.raises(SiweError, match="130 hex digits"):
        recover_signer("hello", "0x1234")


# --- over HTTP against a real server --------------------------------------------------------


async def test_a_signed_in_account_links_its_wallet(live_server: LiveServer) -> None:
    wallet, token = Wallet.new(), live_server.token("siwe-ann")
    body = await wallet.link(live_server, token)
    assert body["linked"] is True and body["address"] == wallet.address
    status, linked = await live_server.call("GET", "/v1/auth/wallet", token=token)
    assert status == 200 and linked["address"] == wallet.address.lower()


async def test_a_wallet_only_user_gets_a_viewer_token(live_server: LiveServer) -> None:
    wallet = Wallet.new()
    body = await wallet.link(live_server)
    assert body["user"]["role"] == "viewer" and body["user"]["id"] == "w-" + wallet.address.lower()
    status, linked = await live_server.call("GET", "/v1/auth/wallet", token=body["token"])
    assert status == 200 and linked["address"] == wallet.address.lower()


async def test_the_server_offers_a_message_to_sign(live_server: LiveServer) -> None:
    wallet = Wallet.new()
    status, body = await live_server.call(
        "POST", "/v1/auth/wallet/nonce", json={"address": wallet.address.lower()}
    )
    assert status == 200 and body["nonce"] in body["message"] and wallet.address in body["message"]
    status, answer = await wallet.verify(live_server, body["message"])
    assert status == 200, answer


async def refused(server: LiveServer, wallet: Wallet, message: str, token: str, **kw: str) -> str:
    status, body = await wallet.verify(server, message, token=token, **kw)
    assert status == 401, body
    _, linked = await server.call("GET", "/v1/auth/wallet", token=token)
    assert linked["address"] is None  # nothing linked
    return str(body["message"])


async def test_a_replayed_nonce_is_refused(live_server: LiveServer) -> None:
    wallet = Wallet.new()
    message = wallet.message(live_server, await wallet.nonce(live_server))
    status, _ = await wallet.verify(live_server, message, token=live_server.token("siwe-first"))
    assert status == 200
    reason = await refused(live_server, wallet, message, live_server.token("siwe-replay"))
    assert "nonce is unknown, expired or already used" in reason


async def test_a_nonce_the_server_never_issued_is_refused(live_server: LiveServer) -> None:
    wallet = Wallet.new()
    message = wallet.message(live_server, "madeup0123456789")
    reason = await refused(live_server, wallet, message, live_server.token("siwe-madeup"))
    assert "nonce is unknown" in reason


async def test_a_message_for_another_domain_is_refused(live_server: LiveServer) -> None:
    wallet = Wallet.new()
    message = wallet.message(live_server, await wallet.nonce(live_server), domain="evil.example")
    reason = await refused(live_server, wallet, message, live_server.token("siwe-domain"))
    assert "is for evil.example, not for this server" in reason


async def test_an_expired_message_is_refused(live_server: LiveServer) -> None:
    wallet = Wallet.new()
    past = datetime.now(UTC) - timedelta(hours=1)
    message = wallet.message(
        live_server, await wallet.nonce(live_server), issued_at=past, expires_in=60
    )
    reason = await refused(live_server, wallet, message, live_server.token("siwe-expired"))
    assert "the message expired at" in reason


async def test_a_chain_that_is_not_allowed_is_refused(live_server: LiveServer) -> None:
    wallet = Wallet.new()
    message = wallet.message(live_server, await wallet.nonce(live_server), chain_id=56)
    reason = await refused(live_server, wallet, message, live_server.token("siwe-chain"))
    assert "chain 56 is not allowed" in reason


async def test_a_signature_by_another_key_is_refused(live_server: LiveServer) -> None:
    wallet, thief = Wallet.new(), Wallet.new()
    message = wallet.message(live_server, await wallet.nonce(live_server))
    reason = await refused(
        live_server, wallet, message, live_server.token("siwe-thief"), signature=thief.sign(message)
    )
    assert f"made by {thief.address}, not by {wallet.address}" in reason


async def test_a_malformed_address_is_refused(live_server: LiveServer) -> None:
    wallet = Wallet.new()
    message = wallet.message(live_server, await wallet.nonce(live_server))
    broken = message.replace(wallet.address, wallet.address[:-2])
    reason = await refused(live_server, wallet, broken, live_server.token("siwe-address"))
    assert "address" in reason and "malformed" in reason


async def test_failed_sign_ins_are_throttled_like_logins(server_factory: object) -> None:
    server = server_factory(VSTUDIO_LOGIN_FAILURES_PER_ADDRESS="3")  # type: ignore[operator]  # the fixture is a ServerFactory
    wallet, source = (
        Wallet.new(),
        f"127.0.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}",
    )
    message = wallet.message(server, "madeup0123456789")
    for _ in range(3):
        status, _body = await wallet.verify(server, message, source=source)
        assert status == 401
    good = wallet.message(server, await wallet.nonce(server))
    status, body = await wallet.verify(server, good, source=source)
    assert status == 429 and body["code"] == 4003  # even a good one waits now


# --- the links both ways, in Redis (one script, also on a cluster) ----------------------------


@pytest.fixture
async def wallets(redis_url: str) -> AsyncIterator[WalletStore]:
    client = await connect(redis_url)
    try:
        yield WalletStore(client, nonce_ttl=60)
    finally:
        await client.aclose()


def fresh(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


def an_address() -> str:
    return "0x" + secrets.token_hex(20)


async def test_a_wallet_linked_by_another_account_moves_to_it(wallets: WalletStore) -> None:
    ann, bob, address = fresh("ann"), fresh("bob"), an_address()
    assert await wallets.link(ann, address.upper().replace("0X", "0x")) is None
    assert await wallets.link(bob, address) == ann
    assert await wallets.owner_of(address) == bob
    assert await wallets.address_of(bob) == address
    assert await wallets.address_of(ann) is None


async def test_an_account_linking_a_new_wallet_lets_go_of_the_old(wallets: WalletStore) -> None:
    ann, old, new = fresh("ann"), an_address(), an_address()
    await wallets.link(ann, old)
    assert await wallets.link(ann, new) is None
    await wallets.link(ann, new)  # linking again changes nothing
    assert await wallets.address_of(ann) == new
    assert await wallets.owner_of(new) == ann
    assert await wallets.owner_of(old) is None


async def test_racing_links_leave_every_link_matched_both_ways(wallets: WalletStore) -> None:
    """Links of a few accounts and addresses in every order at once: each account's address
    names it back, and each address's account names it back (no stale end survives)."""
    users = [fresh("u") for _ in range(4)]
    addresses = [an_address() for _ in range(4)]
    pairs = [(user, address) for user in users for address in addresses] * 2
    random.Random(7).shuffle(pairs)
    await asyncio.gather(*(wallets.link(user, address) for user, address in pairs))
    for user in users:
        address = await wallets.address_of(user)
        assert address is None or await wallets.owner_of(address) == user
    for address in addresses:
        owner = await wallets.owner_of(address)
        assert owner is None or await wallets.address_of(owner) == address
    assert sum([await wallets.owner_of(address) is not None for address in addresses]) >= 1
