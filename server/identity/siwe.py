"""Sign-In with Ethereum (EIP-4361): the message's fields, its rules, and who signed it.

Parsing and the rules are pure (a message and a clock in, :class:`SiweMessage` or
:class:`SiweError` out); the signature is recovered with ``eth-account`` (EIP-191
``personal_sign``), never with hand-made secp256k1. The ``siwe`` package was left out on
purpose: 4.4.0 fails at import with the newest ``abnf``; the grammar is small enough to read
line by line, and every field has its own test (tests/test_siwe.py). ``eth-account`` and
``eth-utils`` (some 20 MB per process) are imported at the first sign-in, not at start.

    example.com wants you to sign in with your Ethereum account:
    0xC0fFee254729296a45a3885639AC7E10F9d54979

    Sign in to V Studio.

    URI: https://example.com/login
    Version: 1
    Chain ID: 1
    Nonce: 32891756abcdef01
    Issued At: 2021-09-30T16:25:24Z
    Expiration Time: 2021-09-30T16:35:24Z
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = [
    "CLOCK_SKEW",
    "SiweError",
    "SiweMessage",
    "build_message",
    "check_message",
    "parse_message",
    "recover_signer",
]

HEADER = " wants you to sign in with your Ethereum account:"
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
NONCE = re.compile(r"[A-Za-z0-9]{8,}")
DOMAIN = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://)?[^\s/?#]+")
FIELDS = {
    "URI": "uri",
    "Version": "version",
    "Chain ID": "chain_id",
    "Nonce": "nonce",
    "Issued At": "issued_at",
    "Expiration Time": "expiration_time",
    "Not Before": "not_before",
    "Request ID": "request_id",
}
REQUIRED = ("URI", "Version", "Chain ID", "Nonce", "Issued At")
CLOCK_SKEW = 60.0
"""Seconds a wallet's clock may be ahead of ours (``Issued At`` a little in the future)."""
MAX_MESSAGE = 4096


class SiweError(ValueError):
    """The message or its signature is refused; the message says why."""


@dataclass(frozen=True, slots=True)
class SiweMessage:
    """The fields of an EIP-4361 message."""

    domain: str
    address: str
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: datetime
    statement: str | None = None
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = field(default_factory=tuple)


def _timestamp(name: str, value: str) -> datetime:
    """An RFC 3339 date-time with its offset (``Z`` or ``+hh:mm``), as aware UTC."""
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
        raise SiweError(f"{name} {value!r} is not an RFC 3339 date-time with a time zone")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise SiweError(f"{name} {value!r} is not a valid date-time") from exc


def parse_message(text: str) -> SiweMessage:
    """The message's fields, or :class:`SiweError` naming the first thing that is wrong."""
    if len(text) > MAX_MESSAGE:
        raise SiweError(f"the message has {len(text)} characters; the limit is {MAX_MESSAGE}")
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines[0].endswith(HEADER):
        raise SiweError(
            "not a Sign-In with Ethereum message: the first line must end with" + HEADER
        )
    domain = lines[0][: -len(HEADER)]
    if not DOMAIN.fullmatch(domain):
        raise SiweError(f"the domain {domain!r} is malformed")
    if len(lines) < 2 or not ADDRESS.fullmatch(lines[1]):
        got = lines[1] if len(lines) > 1 else ""
        raise SiweError(f"the address {got!r} is malformed: it must be 0x and 40 hex digits")
    address = lines[1]
    from eth_utils import is_checksum_address  # see the module's docstring

    if not is_checksum_address(address):
        raise SiweError(f"the address {address} is malformed: it is not EIP-55 checksummed")
    rest = lines[2:]
    while rest and rest[-1] == "":  # a trailing newline is no field
        rest.pop()
    at = 0
    while at < len(rest) and rest[at] == "":
        at += 1
    statement = None
    if at < len(rest) and not rest[at].startswith("URI: "):
        statement = rest[at]
        at += 1
        while at < len(rest) and rest[at] == "":
            at += 1
    values: dict[str, str] = {}
    resources: list[str] = []
    in_resources = False
    for line in rest[at:]:
        if in_resources:
            if not line.startswith("- "):
                raise SiweError(f"line {line!r} is not a resource ('- <uri>')")
            resources.append(line[2:])
            continue
        if line == "Resources:":
            in_resources = True
            continue
        name, sep, value = line.partition(": ")
        if not sep or name not in FIELDS:
            raise SiweError(f"line {line!r} is not a field of EIP-4361")
        if name in values:
            raise SiweError(f"the field {name} appears twice")
        values[name] = value
    for name in REQUIRED:
        if not values.get(name):
            raise SiweError(f"the field {name} is missing")
    if values["Version"] != "1":
        raise SiweError(f"Version {values['Version']!r} is not 1")
    if not values["Chain ID"].isdigit():
        raise SiweError(f"Chain ID {values['Chain ID']!r} is not a number")
    if not NONCE.fullmatch(values["Nonce"]):
        raise SiweError("the nonce must be at least 8 letters and digits")
    return SiweMessage(
        domain=domain,
        address=address,
        uri=values["URI"],
        version="1",
        chain_id=int(values["Chain ID"]),
        nonce=values["Nonce"],
        issued_at=_timestamp("Issued At", values["Issued At"]),
        statement=statement,
        expiration_time=(
            _timestamp("Expiration Time", values["Expiration Time"])
            if "Expiration Time" in values
            else None
        ),
        not_before=(
            _timestamp("Not Before", values["Not Before"]) if "Not Before" in values else None
        ),
        request_id=values.get("Request ID"),
        resources=tuple(resources),
    )


def check_message(
    message: SiweMessage, *, domain: str, chain_ids: frozenset[int], now: datetime
) -> None:
    """The rules that need no Redis: domain, chain, and the message's time window."""
    if message.domain.split("://")[-1] != domain:
        raise SiweError(f"the message is for {message.domain}, not for this server ({domain})")
    if message.chain_id not in chain_ids:
        allowed = ", ".join(str(chain) for chain in sorted(chain_ids))
        raise SiweError(f"chain {message.chain_id} is not allowed here (allowed: {allowed})")
    if (message.issued_at - now).total_seconds() > CLOCK_SKEW:
        raise SiweError(f"the message was issued in the future ({message.issued_at.isoformat()})")
    if message.expiration_time is not None and message.expiration_time <= now:
        raise SiweError(f"the message expired at {message.expiration_time.isoformat()}")
    if message.not_before is not None and message.not_before > now:
        raise SiweError(f"the message is not valid before {message.not_before.isoformat()}")


def recover_signer(text: str, signature: str) -> str:
    """The checksummed address whose key made the ``personal_sign`` ``signature`` of ``text``."""
    if not re.fullmatch(r"0x[0-9a-fA-F]{130}", signature):
        raise SiweError("the signature must be 0x and 130 hex digits (65 bytes)")
    from eth_account import Account  # see the module's docstring
    from eth_account.messages import encode_defunct
    from eth_utils import to_checksum_address

    try:
        signer = Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception as exc:  # eth-keys refuses an invalid v, r or s
        raise SiweError(f"the signature is invalid: {exc}") from exc
    return str(to_checksum_address(signer))


def build_message(
    *,
    domain: str,
    address: str,
    uri: str,
    chain_id: int,
    nonce: str,
    issued_at: datetime,
    expiration_time: datetime | None = None,
    statement: str | None = "Sign in to V Studio to link this wallet.",
) -> str:
    """An EIP-4361 message for a wallet to sign (the server offers one; any wallet's works)."""

    from eth_utils import to_checksum_address  # see the module's docstring

    def stamp(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    lines = [f"{domain}{HEADER}", to_checksum_address(address), ""]
    if statement:
        lines += [statement, ""]
    lines += [
        f"URI: {uri}",
        "Version: 1",
        f"Chain ID: {chain_id}",
        f"Nonce: {nonce}",
        f"Issued At: {stamp(issued_at)}",
    ]
    if expiration_time is not None:
        lines.append(f"Expiration Time: {stamp(expiration_time)}")
    return "\n".join(lines)
