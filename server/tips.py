"""Tips: validated, recorded once per (user, requestId) in the session's ledger, announced.

The ledger is the record a payment service would reconcile against; settlement itself (taking
the money) is that service's job, not this server's. One script records a tip: it looks up the
(user, requestId) pair, and only if it is new appends the tip to the ledger stream, remembers
the pair and adds the amount to the session's totals, so a retried request (a lost reply, a
REST retry with the same ``Idempotency-Key``) returns the original tip and announces nothing.

A tip without a ``requestId`` is refused (4006): without it a retry could not be told from a
second tip. Amounts are kept in the currency's minor units (cents; yen have none), so totals
add up exactly; an amount finer than the currency allows is refused.
"""

from __future__ import annotations

import secrets
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from broker import keys
from broker.models import (
    ErrorCode,
    MessageType,
    ProtocolError,
    Role,
    TipReceived,
    TipSend,
    now_ms,
)
from server.actions import Actor, action, state_part
from server.chat import require_open
from server.context import ServerContext
from server.interaction_gate import redis_slot

__all__ = ["MINOR_UNITS", "TipLedger", "to_minor"]

MINOR_UNITS: dict[str, int] = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3}
"""Decimal places of currencies that do not have two (ISO 4217)."""

RECORD_SCRIPT = """
-- KEYS[1] (user, requestId) -> tip hash, KEYS[2] ledger stream, KEYS[3] totals hash
-- ARGV[1] user NUL requestId, ARGV[2] tip JSON, ARGV[3] currency, ARGV[4] minor units
local original = redis.call('HGET', KEYS[1], ARGV[1])
if original then return {0, original} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', 'tip', ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[3], ARGV[4])
return {1, ARGV[2]}
"""


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


def from_minor(units: int, currency: str) -> float:
    return float(Decimal(units).scaleb(-MINOR_UNITS.get(currency, 2)))


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


def _requests_key(session_id: str) -> str:
    return f"{keys.session_prefix(session_id)}:tips:requests"


def _ledger_key(session_id: str) -> str:
    return f"{keys.session_prefix(session_id)}:tips"


def _totals_key(session_id: str) -> str:
    return f"{keys.session_prefix(session_id)}:tips:totals"


class TipLedger:
    """The session's tips in Redis: record once, read the ledger and the totals."""

    def __init__(self, ctx: ServerContext) -> None:
        self.redis = ctx.bus.redis
        self._record = self.redis.register_script(RECORD_SCRIPT)

    async def record(
        self, session_id: str, actor: Actor, tip: TipSend, request_id: str, minor: int
    ) -> tuple[TipReceived, bool]:
        """The tip as recorded and whether it is new (``False``: a repeat of ``request_id``)."""
        received = TipReceived(
            tip_id=f"tip_{secrets.token_hex(8)}",
            user_id=actor.user_id,
            username=actor.username,
            amount=tip.amount,
            currency=tip.currency,
            message=tip.message,
        )
        stored = {**received.wire(), "requestId": request_id, "timestamp": now_ms()}
        fresh, body = await self._record(
            keys=[_requests_key(session_id), _ledger_key(session_id), _totals_key(session_id)],
            args=[f"{actor.user_id}\0{request_id}", orjson.dumps(stored), tip.currency, minor],
        )
        original = orjson.loads(body)
        original.pop("requestId", None)
        original.pop("timestamp", None)
        return TipReceived.model_validate(original), bool(fresh)

    async def totals(self, session_id: str) -> dict[str, float]:
        raw = await self.redis.hgetall(_totals_key(session_id))
        return {
            currency.decode(): from_minor(int(units), currency.decode())
            for currency, units in sorted(raw.items())
        }

    async def entries(self, session_id: str) -> list[dict[str, Any]]:
        """Every recorded tip, oldest first: what settlement reconciles against."""
        rows = await self.redis.xrange(_ledger_key(session_id))
        return [orjson.loads(fields[b"tip"]) for _, fields in rows]


def ledger(ctx: ServerContext) -> TipLedger:
    found = ctx.extras.get("tips")
    if found is None:
        found = ctx.extras["tips"] = TipLedger(ctx)
    return found


@action(MessageType.TIP_SEND, roles={Role.VIEWER, Role.TOKEN_HOLDER})
async def send_tip(ctx: ServerContext, actor: Actor, tip: TipSend) -> dict[str, Any]:
    if not actor.request_id:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            "tip.send needs a requestId (over REST: an Idempotency-Key header) so that a "
            "retried tip is never counted twice",
        )
    minor = check_tip(
        tip, currencies=ctx.settings.tip_currencies, max_amount=ctx.settings.tip_max_amount
    )
    async with redis_slot(ctx):
        require_open(await ctx.sessions.get(actor.session_id))
        received, fresh = await ledger(ctx).record(
            actor.session_id, actor, tip, actor.request_id, minor
        )
    if fresh:
        await ctx.bus.publish(actor.session_id, "events", MessageType.TIP_RECEIVED, received.wire())
    return {"tip": received.wire(), "duplicate": not fresh}


@state_part
async def tips_state(ctx: ServerContext, session_id: str) -> dict[str, Any]:
    """``tipTotals``: the session's tips summed per currency."""
    return {"tipTotals": await ledger(ctx).totals(session_id)}
