"""What the gate says to a token contract and how it reads the answer: no I/O here.

Calldata is ABI-encoded with ``eth-abi`` (``balanceOf(address)`` for ERC-20 and ERC-721,
``balanceOf(address,uint256)`` for ERC-1155, ``decimals()``), answers are decoded the same way,
and :func:`required_units` turns the session's ``minBalance`` (whole tokens) into the token's
own units: ``ceil(minBalance * 10**decimals)``, with ``decimals`` 0 for ERC-721 and ERC-1155.

``eth-abi`` (with ``eth-utils``, some 15 MB per process) is imported when the first check is
made, so a server whose sessions require no tokens does not carry it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Literal

from broker.models import TokenRequirement

__all__ = [
    "ADDRESS",
    "Check",
    "Standard",
    "Verdict",
    "balance_call",
    "decimals_call",
    "decode_uint",
    "is_address",
    "judge",
    "required_units",
    "whole_tokens",
]

Standard = Literal["erc20", "erc721", "erc1155"]
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

BALANCE_OF = bytes.fromhex("70a08231")
"""``keccak("balanceOf(address)")[:4]`` (ERC-20, ERC-721)."""
BALANCE_OF_ID = bytes.fromhex("00fdd58e")
"""``keccak("balanceOf(address,uint256)")[:4]`` (ERC-1155)."""
DECIMALS = bytes.fromhex("313ce567")
"""``keccak("decimals()")[:4]``."""
MAX_DECIMALS = 77
"""uint256 holds at most 10**77; a ``decimals()`` above that is not a real token's."""


def is_address(value: str) -> bool:
    return bool(ADDRESS.fullmatch(value))


def balance_call(owner: str, token_id: int | None) -> str:
    """``eth_call`` data asking the balance of ``owner`` (of ``token_id`` for ERC-1155)."""
    from eth_abi import encode  # see the module's docstring

    if token_id is None:
        return "0x" + (BALANCE_OF + encode(["address"], [owner])).hex()
    return "0x" + (BALANCE_OF_ID + encode(["address", "uint256"], [owner, token_id])).hex()


def decimals_call() -> str:
    return "0x" + DECIMALS.hex()


def decode_uint(result: Any) -> int:
    """The uint256 in an ``eth_call`` result (``0x`` and 64 hex digits), or ``ValueError``."""
    if not isinstance(result, str) or not result.startswith("0x"):
        raise ValueError(f"the answer {result!r} is not hex data")
    try:
        raw = bytes.fromhex(result[2:])
    except ValueError as exc:
        raise ValueError(f"the answer {result[:20]!r}... is not hex data") from exc
    if not raw:
        raise ValueError("the contract returned no data (is it a token contract on this chain?)")
    from eth_abi import decode  # see the module's docstring
    from eth_abi.exceptions import DecodingError

    try:
        (value,) = decode(["uint256"], raw[:32])
    except DecodingError as exc:
        raise ValueError(f"the answer is not a uint256: {exc}") from exc
    return int(value)


def required_units(min_balance: float, decimals: int) -> int:
    """``minBalance`` whole tokens in the token's smallest units, rounded up.

    ``Decimal(str(x))`` keeps what was written (``0.1`` stays one tenth, not the binary float
    just above it), so ``minBalance: 1.5`` of a 6-decimal token is exactly 1,500,000 units.
    """
    scaled = Decimal(str(min_balance)).scaleb(decimals)
    return int(scaled.to_integral_value(rounding=ROUND_CEILING))


def whole_tokens(units: int, decimals: int) -> str:
    """``units`` as whole tokens for people (``1500000`` with 6 decimals -> ``"1.5"``)."""
    text = format(Decimal(units).scaleb(-decimals), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True, slots=True)
class Check:
    """What the gate saw for one requirement: the balance, or why it could not look."""

    requirement: TokenRequirement
    chain_id: int
    standard: Standard | None = None
    decimals: int | None = None
    balance: int | None = None
    """In the token's own units; ``None`` when the check could not be made."""
    error: str | None = None

    @property
    def required(self) -> int | None:
        if self.decimals is None:
            return None
        return required_units(self.requirement.min_balance, self.decimals)

    @property
    def passed(self) -> bool:
        required = self.required
        return self.balance is not None and required is not None and self.balance >= required

    def describe(self) -> str:
        token = self.requirement.contract_address
        if self.requirement.token_id is not None:
            token += f" id {self.requirement.token_id}"
        where = f"{token} on chain {self.chain_id}"
        if self.error is not None:
            return f"the token check could not be made for {where}: {self.error}"
        assert self.balance is not None and self.decimals is not None
        held = whole_tokens(self.balance, self.decimals)
        need = self.requirement.min_balance
        verb = "meets" if self.passed else "is below"
        return f"balance {held} of {where} {verb} the minimum {need}"

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requirement": self.requirement.wire(),
            "chainId": self.chain_id,
            "standard": self.standard,
            "decimals": self.decimals,
            "balance": str(self.balance) if self.balance is not None else None,
            "balanceTokens": (
                whole_tokens(self.balance, self.decimals)
                if self.balance is not None and self.decimals is not None
                else None
            ),
            "required": str(self.required) if self.required is not None else None,
            "passed": self.passed,
            "reason": self.describe(),
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """Every requirement's check: the wallet passes when each one passed."""

    address: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def reason(self) -> str:
        """Why the gate refused (the first failed checks), or that it let the wallet through."""
        if not self.checks:
            return "this session requires no tokens"
        failed = [check for check in self.checks if not check.passed]
        if not failed:
            return f"{self.address} holds every required token"
        return f"token gate failed for {self.address}: " + "; ".join(
            check.describe() for check in failed
        )

    def wire(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "passed": self.passed,
            "reason": self.reason,
            "checks": [check.wire() for check in self.checks],
        }


def judge(address: str, checks: list[Check]) -> Verdict:
    return Verdict(address, tuple(checks))
