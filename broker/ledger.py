"""The session's money ledger: what a platform event or a fan's tip adds to it, and reading it.

One ledger per session holds every amount of money the session received, whatever the platform:
Twitch bits (``cheer``), YouTube Super Chats and Super Stickers, TikTok gifts (in diamonds) and
fans' own tips. Each entry is recorded once, under a key of its own: a platform event by its id
(the platform's own id, so two redundant workers reading one channel count a cheer once), a fan's
tip by (user, requestId). Platform entries are written by the bus's publish script in the same
atomic step that publishes the event (:class:`broker.bus.OutgoingEvent` ``ledger``); fans' tips
by ``server/interactions/tips.py``. Both append to one stream and add to one totals hash keyed by
``<platform>:<currency>``.

Amounts are integers in the currency's minor units (cents; yen have none; 1 bit; 1 diamond).
BITS and DIAMONDS are pseudo-currencies: they are never converted silently; a USD rate for each
is a setting (``ledger_usd_rates``) and a conversion is labelled as an estimate wherever shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from broker import keys
from broker.models import PlatformEvent

__all__ = [
    "LEDGER_KINDS",
    "MINOR_UNITS",
    "LedgerEntry",
    "entries",
    "from_minor",
    "ledger_entry",
    "totals",
    "usd_estimate",
]

MINOR_UNITS: dict[str, int] = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3, "BITS": 0, "DIAMONDS": 0}
"""Decimal places of currencies that do not have two (ISO 4217), and of the pseudo-currencies."""

LEDGER_KINDS = frozenset({"cheer", "superchat", "supersticker", "gift"})
"""Platform event kinds whose money reaches the artist and so the ledger. Subscriptions and
memberships are money too, but the platforms do not say what the artist gets for them."""


def from_minor(units: int, currency: str) -> float:
    """``1250 USD`` -> ``12.5``; ``100 BITS`` -> ``100.0``."""
    return float(Decimal(units).scaleb(-MINOR_UNITS.get(currency, 2)))


def totals_field(platform: str, currency: str) -> str:
    """The totals hash field of one platform and currency."""
    return f"{platform}:{currency}"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One amount for the ledger: its idempotency key, the stored JSON and the totals field."""

    request: str
    body: bytes
    totals_field: str
    amount_minor: int


def ledger_entry(event: PlatformEvent) -> LedgerEntry | None:
    """The ledger entry a platform event stands for, or ``None`` when it carries no money.

    A cheer sent in another channel of a Twitch shared chat session (``source_channel``) shows
    in this channel's chat too, but its bits went to that channel's broadcaster: not this
    artist's money. When the session reads that channel as well, its own copy (same id) counts.
    """
    if event.kind not in LEDGER_KINDS or not event.amount_minor or event.currency is None:
        return None
    if event.source_channel:
        return None
    stored: dict[str, Any] = {
        "id": event.id,
        "platform": event.platform.value,
        "kind": event.kind,
        "userId": event.user_id,
        "username": event.username,
        "displayName": event.display_name,
        "amountMinor": event.amount_minor,
        "amount": from_minor(event.amount_minor, event.currency),
        "currency": event.currency,
        "message": event.message or event.detail,
        "timestamp": event.timestamp,
    }
    body = orjson.dumps({k: v for k, v in stored.items() if v is not None})
    return LedgerEntry(
        request=f"{event.platform.value}\0{event.id}",
        body=body,
        totals_field=totals_field(event.platform.value, event.currency),
        amount_minor=event.amount_minor,
    )


async def totals(redis: aioredis.Redis, session_id: str) -> dict[str, dict[str, float]]:
    """``{platform: {currency: amount}}``: everything the session received, in major units."""
    raw = cast(dict[bytes, bytes], await redis.hgetall(keys.ledger_totals(session_id)))
    result: dict[str, dict[str, float]] = {}
    for field_, units in sorted(raw.items()):
        platform, _, currency = field_.decode().partition(":")
        result.setdefault(platform, {})[currency] = from_minor(int(units), currency)
    return result


def usd_estimate(by_platform: dict[str, dict[str, float]], rates: dict[str, float]) -> float | None:
    """The ledger's total in USD when every currency in it has a rate; ``None`` otherwise, so a
    missing rate shows as unknown rather than as a silently wrong sum."""
    total = Decimal(0)
    for amounts in by_platform.values():
        for currency, amount in amounts.items():
            if currency == "USD":
                total += Decimal(str(amount))
            elif currency in rates:
                total += Decimal(str(amount)) * Decimal(str(rates[currency]))
            else:
                return None
    return float(round(total, 2))


async def entries(redis: aioredis.Redis, session_id: str) -> list[dict[str, Any]]:
    """Every entry, oldest first, in one shape: fans' tips (``platform: audifi``) and platform
    money alike have ``id, platform, kind, username, amount, amountMinor, currency,
    timestamp`` and maybe ``userId, displayName, message``."""
    rows = cast(
        list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(keys.tip_ledger(session_id))
    )
    out = []
    for _, fields in rows:
        entry = orjson.loads(fields[b"tip"])
        if "platform" not in entry or "tipId" in entry:  # a fan's tip
            currency = entry["currency"]
            places = MINOR_UNITS.get(currency, 2)
            entry = {
                "id": entry.get("tipId"),
                "platform": "audifi",
                "kind": "tip",
                "userId": entry.get("userId"),
                "username": entry.get("username"),
                "amountMinor": int(Decimal(str(entry["amount"])).scaleb(places)),
                "amount": entry["amount"],
                "currency": currency,
                "message": entry.get("message"),
                "timestamp": entry.get("timestamp"),
                "requestId": entry.get("requestId"),
            }
            entry = {k: v for k, v in entry.items() if v is not None}
        out.append(entry)
    return out
