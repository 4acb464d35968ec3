"""Tips: validated, recorded once per (user, requestId) in the session's ledger, announced.

The ledger is the record a payment service would reconcile against; settlement itself (taking
the money) is that service's job, not this server's. One script records a tip: it looks up the
(user, requestId) pair, and only if it is new appends the tip to the ledger stream, remembers
the pair and adds the amount to the session's totals, so a retried request (a lost reply, a
REST retry with the same ``Idempotency-Key``) returns the original tip and announces nothing.
A recorded tip holds a short claim on its announcement; if its process dies before publishing
``tip.received``, the client's retry after the claim lapsed announces it, once.

``requestId`` is optional, as in the seed's envelope: a tip without one is a new tip every
time (it gets a fresh server-side id, ``server:<random>``), so a client that wants a retry
counted once sends a ``requestId`` (over REST, ``Idempotency-Key``).

Amounts are kept in the currency's minor units (cents; yen have none), so totals add up
exactly; an amount finer than the currency allows is refused.

The ledger is one for the whole session (``broker/ledger.py``): platform money (bits, Super
Chats, TikTok gifts) is recorded in the same stream by the bus when its event is published,
keyed by the platform's own id, and every amount adds to the per-platform totals, a fan's tip
under ``audifi``. ``tipTotals`` in ``session.state`` stays what it was (fans' tips by
currency); ``ledgerTotals`` is every platform's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from broker import keys, ledger
from broker.bus import RawHash
from broker.ledger import MINOR_UNITS, from_minor
from broker.models import (
    ErrorCode,
    MessageType,
    ProtocolError,
    Role,
    TipReceived,
    TipSend,
    now_ms,
)
from broker.scripts import Script
from server.interactions.chat import require_open
from server.interactions.registry import Action, Actor
from server.interactions.services import Services

__all__ = ["MINOR_UNITS", "Recorded", "TipLedger", "to_minor"]

RECORD_SCRIPT = """
-- KEYS[1] (user, requestId) -> tip hash, KEYS[2] ledger stream, KEYS[3] totals hash,
-- KEYS[4] announced (user, requestId) hash, KEYS[5] this tip's announce claim,
-- KEYS[6] the cross-platform ledger totals
-- ARGV[1] user NUL requestId, ARGV[2] tip JSON, ARGV[3] currency, ARGV[4] minor units,
-- ARGV[5] claim ms, ARGV[6] ledger totals field. Returns {fresh, tip JSON, announce}:
-- announce = 1 tells the caller to publish tip.received, then mark it announced.
local original = redis.call('HGET', KEYS[1], ARGV[1])
if original then
  if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return {0, original, 0} end
  -- recorded but never announced: its process died, unless it still holds the claim
  if redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[5]) then return {0, original, 1} end
  return {0, original, 0}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', 'tip', ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[3], ARGV[4])
redis.call('HINCRBY', KEYS[6], ARGV[6], ARGV[4])
redis.call('SET', KEYS[5], '1', 'PX', ARGV[5])
return {1, ARGV[2], 1}
"""

SERVER_REQUEST_PREFIX = "server:"
"""The request id given to a tip sent without one (clients' ids are theirs to choose)."""

ANNOUNCE_CLAIM_MS = 10_000
"""How long the process that recorded a tip has to announce it before a retry may."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """A tip as the ledger holds it: ``fresh`` if this request recorded it, ``announce`` if
    this caller must publish ``tip.received`` (then call :meth:`TipLedger.announced`)."""

    tip: TipReceived
    fresh: bool
    announce: bool


def to_minor(amount: float, currency: str) -> int:
    """``12.5 USD`` -> ``1250``; 4006 when the amount is finer than the currency allows."""
    places = MINOR_UNITS.get(currency, 2)
    try:
        exact = Decimal(str(amount)).scaleb(places)
    except InvalidOperation as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"amount {amount} is not a number") from exc
    if exact != exact.to_integral_value():
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"amount {amount} has more decimals than {currency} allows ({places})",
        )
    return int(exact)


def check_tip(tip: TipSend, *, currencies: list[str], max_amount: float) -> int:
    """The tip's amount in minor units, after the rules; 4006 with the reason otherwise."""
    if tip.currency not in currencies:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"currency {tip.currency} is not accepted; use one of {', '.join(currencies)}",
        )
    if tip.amount > max_amount:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"amount {tip.amount} {tip.currency} is above the limit of {max_amount:g}",
        )
    return to_minor(tip.amount, tip.currency)


class TipLedger:
    """The session's tips in Redis: record once, announce once, read the ledger and totals."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.announce_claim_ms = ANNOUNCE_CLAIM_MS
        self._record = Script(self.redis, RECORD_SCRIPT)

    async def record(
        self, session_id: str, actor: Actor, tip: TipSend, request_id: str, minor: int
    ) -> Recorded:
        """Record the tip unless (user, ``request_id``) is recorded; the tip the ledger has."""
        received = TipReceived(
            tip_id=f"tip_{secrets.token_hex(8)}",
            user_id=actor.user_id,
            username=actor.username,
            amount=tip.amount,
            currency=tip.currency,
            message=tip.message,
        )
        stored = {**received.wire(), "requestId": request_id, "timestamp": now_ms()}
        request = f"{actor.user_id}\0{request_id}"
        fresh, body, announce = await self._record(
            keys=[
                keys.tip_requests(session_id),
                keys.tip_ledger(session_id),
                keys.tip_totals(session_id),
                keys.tip_announced(session_id),
                keys.tip_announce_claim(session_id, request),
                keys.ledger_totals(session_id),
            ],
            args=[
                request,
                orjson.dumps(stored),
                tip.currency,
                minor,
                self.announce_claim_ms,
                ledger.totals_field("audifi", tip.currency),
            ],
        )
        original = orjson.loads(body)
        original.pop("requestId", None)
        original.pop("timestamp", None)
        return Recorded(TipReceived.model_validate(original), bool(fresh), bool(announce))

    async def announced(self, session_id: str, user_id: str, request_id: str) -> None:
        """Remember that the tip's ``tip.received`` went out."""
        await self.redis.hset(keys.tip_announced(session_id), f"{user_id}\0{request_id}", 1)

    async def totals(self, session_id: str) -> dict[str, float]:
        raw = cast(RawHash, await self.redis.hgetall(keys.tip_totals(session_id)))
        return {
            currency.decode(): from_minor(int(units), currency.decode())
            for currency, units in sorted(raw.items())
        }

    async def entries(self, session_id: str) -> list[dict[str, Any]]:
        """Every ledger entry, oldest first (fans' tips and platform money, one shape): what
        settlement reconciles against."""
        return await ledger.entries(self.redis, session_id)

    async def platform_totals(self, session_id: str) -> dict[str, dict[str, float]]:
        """``{platform: {currency: amount}}`` over the whole ledger."""
        return await ledger.totals(self.redis, session_id)


async def send_tip(services: Services, actor: Actor, tip: TipSend) -> dict[str, Any]:
    # without a requestId every tip counts: it is recorded under a fresh id of its own
    request_id = actor.request_id or f"{SERVER_REQUEST_PREFIX}{secrets.token_hex(12)}"
    minor = check_tip(
        tip,
        currencies=services.settings.tip_currencies,
        max_amount=services.settings.tip_max_amount,
    )
    tips = services.tips
    async with services.redis_gate:
        require_open(await services.sessions.get(actor.session_id))
        recorded = await tips.record(actor.session_id, actor, tip, request_id, minor)
        if recorded.announce:
            totals = await tips.totals(actor.session_id)
            announcement = {**recorded.tip.wire(), "totals": totals}
            await services.bus.publish(
                actor.session_id, "events", MessageType.TIP_RECEIVED, announcement
            )
            await tips.announced(actor.session_id, actor.user_id, request_id)
    return {"tip": recorded.tip.wire(), "duplicate": not recorded.fresh}


async def tips_state(services: Services, session_id: str) -> dict[str, Any]:
    """``tipTotals``: fans' tips summed per currency; ``ledgerTotals``: every platform's money
    by platform and currency; ``ledgerUsd``: their USD estimate with the configured rates
    (absent when a currency in the ledger has no rate: never a guess)."""
    by_platform = await services.tips.platform_totals(session_id)
    state: dict[str, Any] = {
        "tipTotals": await services.tips.totals(session_id),
        "ledgerTotals": by_platform,
    }
    rates = services.settings.ledger_usd_rates
    estimate = ledger.usd_estimate(by_platform, rates) if by_platform else None
    if estimate is not None:
        state["ledgerUsd"] = {"estimate": estimate, "rates": rates}
    return state


ACTIONS = (Action(MessageType.TIP_SEND, send_tip, frozenset({Role.VIEWER, Role.TOKEN_HOLDER})),)
"""The client messages this module performs."""
