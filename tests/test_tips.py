"""Tips against a real Redis: validation, one record per (user, requestId), totals."""

from __future__ import annotations

import asyncio

import pytest

from broker import Bus
from broker.models import ErrorCode, MessageType, ProtocolError, Role, TipSend
from server.interactions.catalog import STATE_PARTS
from server.interactions.tips import to_minor
from tests.support.studio import open_studio

TIP = MessageType.TIP_SEND


def test_amounts_are_kept_in_minor_units() -> None:
    assert to_minor(12.5, "USD") == 1250
    assert to_minor(0.1, "EUR") == 10
    assert to_minor(500, "JPY") == 500
    for amount, currency in ((1.005, "USD"), (1.5, "JPY")):
        with pytest.raises(ProtocolError) as caught:
            to_minor(amount, currency)
        assert "more decimals" in caught.value.message


async def test_a_tip_is_recorded_once_per_request_id(bus: Bus) -> None:
    async with open_studio(bus) as studio:
        fan = studio.actor(request_id="req-1")
        first = await studio.do(fan, TIP, {"amount": 5, "currency": "USD", "message": "Encore!"})
        assert first["duplicate"] is False and first["tip"]["amount"] == 5
        # retries, even concurrent ones, return the original and announce nothing
        retries = await asyncio.gather(
            *(studio.do(fan, TIP, {"amount": 5, "currency": "USD"}) for _ in range(10))
        )
        assert all(r["duplicate"] and r["tip"] == first["tip"] for r in retries)
        [announced] = await studio.events("tip.received")
        assert announced.payload == {**first["tip"], "totals": {"USD": 5.0}}
        assert announced.payload["message"] == "Encore!"
        # another request id, or the same id from another user, is another tip
        await studio.do(
            studio.actor(user_id=fan.user_id, request_id="req-2"),
            TIP,
            {"amount": 2.25, "currency": "USD"},
        )
        await studio.do(studio.actor(request_id="req-1"), TIP, {"amount": 300, "currency": "JPY"})
        assert len(await studio.events("tip.received")) == 3
        entries = await studio.services.tips.entries(studio.session_id)
        assert [e["requestId"] for e in entries] == ["req-1", "req-2", "req-1"]
        state: dict = {}
        for part in STATE_PARTS:
            state.update(await part(studio.services, studio.session_id))
        assert state["tipTotals"] == {"JPY": 300.0, "USD": 7.25}


async def test_tips_are_validated_with_reasons(bus: Bus) -> None:
    async with open_studio(bus, tip_max_amount=100) as studio:
        fan = studio.actor(request_id="r")
        cases = [
            ({"amount": 101, "currency": "USD"}, "above the limit of 100"),
            ({"amount": 1, "currency": "CHF"}, "use one of USD, EUR, GBP, JPY"),
            ({"amount": 0.001, "currency": "USD"}, "more decimals"),
        ]
        for payload, reason in cases:
            with pytest.raises(ProtocolError) as caught:
                await studio.do(fan, TIP, payload)
            assert caught.value.code == ErrorCode.INVALID_MESSAGE and reason in caught.value.message
        with pytest.raises(ProtocolError) as caught:
            await studio.do(studio.actor(), TIP, {"amount": 1, "currency": "USD"})
        assert "needs a requestId" in caught.value.message
        with pytest.raises(ProtocolError) as caught:
            await studio.do(
                studio.actor(Role.ARTIST, request_id="r"), TIP, {"amount": 1, "currency": "USD"}
            )
        assert caught.value.code == ErrorCode.FORBIDDEN
        assert not await studio.events("tip.received")
        assert await studio.services.tips.entries(studio.session_id) == []


async def test_a_tip_recorded_by_a_process_that_died_before_announcing_is_announced_on_retry(
    bus: Bus,
) -> None:
    async with open_studio(bus) as studio:
        fan = studio.actor(request_id="req-9")
        ledger = studio.services.tips
        ledger.announce_claim_ms = 100
        # what a process does before it publishes: the tip is in the ledger, then it dies
        recorded = await ledger.record(
            studio.session_id, fan, TipSend(amount=3, currency="GBP"), "req-9", 300
        )
        assert recorded.fresh and recorded.announce
        # a retry at once does not announce it twice while the first process may still do so
        early = await studio.do(fan, TIP, {"amount": 3, "currency": "GBP"})
        assert early["duplicate"] and not await studio.events("tip.received")
        await asyncio.sleep(0.2)
        # once that process's claim has lapsed, the client's retry announces it, once
        retries = [await studio.do(fan, TIP, {"amount": 3, "currency": "GBP"}) for _ in range(3)]
        assert all(r["duplicate"] and r["tip"] == retries[0]["tip"] for r in retries)
        [announced] = await studio.events("tip.received")
        assert announced.payload == {**recorded.tip.wire(), "totals": {"GBP": 3.0}}
        state: dict = {}
        for part in STATE_PARTS:
            state.update(await part(studio.services, studio.session_id))
        assert state["tipTotals"] == {"GBP": 3.0}
