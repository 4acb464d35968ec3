"""Signed tickets: single-use on every process, tamper-proof, expiring, issued without Redis."""

from __future__ import annotations

import asyncio
import uuid
from base64 import urlsafe_b64decode, urlsafe_b64encode

import orjson
import pytest

from broker import keys
from broker.bus import Bus
from broker.models import ErrorCode, ProtocolError, Role
from server.identity.auth import Identity
from server.identity.tickets import TicketStore


def fan() -> Identity:
    name = f"fan-{uuid.uuid4().hex[:8]}"
    return Identity(name, name, Role.VIEWER)


async def refused(store: TicketStore, ticket: str) -> str:
    with pytest.raises(ProtocolError) as caught:
        await store.redeem(ticket)
    assert caught.value.code == ErrorCode.INVALID_TICKET
    return caught.value.message


async def test_a_ticket_works_once_whichever_process_redeems_it(bus: Bus) -> None:
    here, there = TicketStore(bus.redis, ttl=30), TicketStore(bus.redis, ttl=30)
    who = fan()
    ticket = await here.issue(who, "s1", Role.VIEWER)
    participant = await there.redeem(ticket)
    assert (participant.user_id, participant.session_id, participant.role) == (
        who.user_id,
        "s1",
        Role.VIEWER,
    )
    named = await here.issue(Identity("u-7", "Ann B.", Role.VIEWER), "s1", Role.PRODUCER)
    assert (await there.redeem(named)).username == "Ann B."
    assert "used" in await refused(here, ticket)
    assert "used" in await refused(there, ticket)
    twice = await here.issue(who, "s1", Role.VIEWER)
    outcomes = await asyncio.gather(here.redeem(twice), there.redeem(twice), return_exceptions=True)
    assert sum(not isinstance(outcome, BaseException) for outcome in outcomes) == 1


async def test_a_changed_ticket_is_refused(bus: Bus) -> None:
    store = TicketStore(bus.redis, ttl=30)
    ticket = await store.issue(fan(), "s1", Role.VIEWER)
    payload, mac = ticket.split(".")
    body = orjson.loads(urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body[3] = "artist"
    forged = urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=").decode()
    other = mac[:-1] + ("B" if mac.endswith("A") else "A")
    for bad in (f"{forged}.{mac}", f"{payload}.{other}", payload, f"{payload}.é", "x" * 3000):
        await refused(store, bad)
    await store.redeem(ticket)  # none of those used it up


async def test_an_expired_ticket_is_refused(bus: Bus) -> None:
    store = TicketStore(bus.redis, ttl=1)
    ticket = await store.issue(fan(), "s1", Role.VIEWER)
    await asyncio.sleep(1.05)
    assert "expired" in await refused(store, ticket)


async def test_issuing_costs_no_redis_command(bus: Bus) -> None:
    store = TicketStore(bus.redis, ttl=30)
    await store.issue(fan(), "s1", Role.VIEWER)  # reads the signing key once

    async def writes() -> int:
        stats = await bus.redis.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("set", "get"))

    before = await writes()
    await asyncio.gather(*(store.issue(fan(), "s1", Role.VIEWER) for _ in range(100)))
    assert await writes() == before


async def test_a_key_made_anew_in_redis_is_picked_up_at_once(bus: Bus) -> None:
    old = TicketStore(bus.redis, ttl=30)
    await old.issue(fan(), "s1", Role.VIEWER)  # holds the key it read
    await bus.redis.delete(keys.ticket_key())  # Redis lost it; the next process makes one
    ticket = await TicketStore(bus.redis, ttl=30).issue(fan(), "s1", Role.VIEWER)
    assert (await old.redeem(ticket)).session_id == "s1"


async def test_forged_tickets_do_not_each_read_the_key_again(bus: Bus) -> None:
    """A ticket the key did not sign makes the store read the key again (it may have been made
    anew), but at most once a second: a flood of forgeries is not a flood of Redis reads."""
    store = TicketStore(bus.redis, ttl=30)
    ticket = await store.issue(fan(), "s1", Role.VIEWER)
    payload, mac = ticket.split(".")
    other = mac[:-1] + ("B" if mac.endswith("A") else "A")
    reads = store._key_reads.reads
    for _ in range(50):
        await refused(store, f"{payload}.{other}")
    assert store._key_reads.reads - reads == 1
    await store.redeem(ticket)
