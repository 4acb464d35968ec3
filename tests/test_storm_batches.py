"""What a reconnect storm's clients share in one loop turn stays per client where it must: a
revoked token among others is refused alone, every ticket request counts against the rate
limit, every connection against the caps, a script Redis forgot runs each call once, and a
session read shared in one turn is never older than that turn."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
import redis.asyncio as aioredis

from broker import Bus, keys
from broker.connection import is_cluster
from broker.models import ErrorCode, ProtocolError, Session, SessionStatus
from config import ServerSettings
from server.identity.auth import AuthError, Identity, Revocations, TokenVerifier
from server.interactions.sessions import SessionStore
from server.presence import ConnectionLimit, ConnectionQuota
from server.ratelimit import Limit, RedisWindow
from server.turns import TurnScript
from tests.support.types import ServerFactory

SECRET = "storm-batches-secret-storm-batches-secret"


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_a_revoked_token_among_a_turns_checks_is_refused_alone(bus: Bus) -> None:
    revocations = Revocations(bus.redis)
    verifier = TokenVerifier(ServerSettings(), SECRET, revocations)
    tokens = [verifier.mint(name("storm"), "viewer") for _ in range(3)]
    revoked = await verifier.verify(tokens[1])
    await revocations.revoke(revoked)
    batches = revocations._lookups.batches
    results = await asyncio.gather(
        *(verifier.verify(token) for token in tokens), return_exceptions=True
    )
    assert revocations._lookups.batches == batches + 1  # one pipeline for the three
    assert isinstance(results[0], Identity) and isinstance(results[2], Identity)
    assert isinstance(results[1], AuthError) and "logged out" in str(results[1])


async def test_a_changed_account_in_a_turn_refuses_only_its_own_token(bus: Bus) -> None:
    revocations = Revocations(bus.redis)
    verifier = TokenVerifier(ServerSettings(), SECRET, revocations)
    users = [name("acct") for _ in range(3)]
    for user in users:
        await bus.redis.hset(keys.user(user), "ver", 1)
    tokens = [verifier.mint(user, "viewer", extra={"vstudio_ver": 1}) for user in users]
    await bus.redis.hset(keys.user(users[0]), "ver", 2)  # password changed since
    await bus.redis.delete(keys.user(users[2]))  # account deleted
    plain = verifier.mint(name("plain"), "viewer")  # a token without a version, in between
    results = await asyncio.gather(
        *(verifier.verify(token) for token in [tokens[0], plain, tokens[1], tokens[2]]),
        return_exceptions=True,
    )
    assert "changed since" in str(results[0])
    assert isinstance(results[1], Identity) and isinstance(results[2], Identity)
    assert "no longer exists" in str(results[3])


async def test_every_request_of_a_batch_counts_against_the_window(bus: Bus) -> None:
    """Two processes' windows, five requests of one user in one turn: three pass, the limit."""
    here, there = RedisWindow(bus.redis), RedisWindow(bus.redis)
    prefix = keys.ticket_rate(name("rate"))
    limits = (Limit("tickets", 3, 60.0),)
    now = time.time()
    waits = await asyncio.gather(
        *(window.retry_after(prefix, limits, now) for window in (here, there, here, there, here))
    )
    assert sum(wait is None for wait in waits) == 3, waits
    assert all(wait is not None and 0 < wait <= 60 for wait in waits if wait is not None)
    assert here._script.batches == 1 and there._script.batches == 1
    assert await here.retry_after(prefix, limits, now) is not None  # still full afterwards


async def test_the_caps_count_every_connection_of_a_turn(bus: Bus) -> None:
    # Only the user's cap binds here: on a cluster the user's and the address's script runs of
    # one turn go side by side, so with both caps binding at once their orders may differ
    # (the address admitting one connection the user refused), and fewer than 2 are held.
    quota = ConnectionQuota(bus.redis, name("proc"), per_user=2, per_address=4)
    user, address = name("capped"), f"10.9.{uuid.uuid4().int % 250}.1"
    results = await asyncio.gather(
        *(quota.admit(user, address) for _ in range(4)), return_exceptions=True
    )
    held = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, ConnectionLimit)]
    assert len(held) == 2 and len(refused) == 2, results
    assert all("this account" in str(r) for r in refused)
    # the refused ones gave their address place back: two more users fit the address cap
    for other in (name("other"), name("second")):
        assert isinstance(await quota.admit(other, address), tuple)
    with pytest.raises(ConnectionLimit, match="this address"):
        await quota.admit(name("third"), address)
    for hold in held:
        await quota.release(hold)


COUNTER = """
if ARGV[1] == 'bad' then return redis.error_reply('bad call') end
return redis.call('INCR', KEYS[1])
"""


async def test_a_script_redis_forgot_runs_each_call_once(bus: Bus) -> None:
    counter = TurnScript(bus.redis, COUNTER)
    key = f"vstudio:{{{name('count')}}}:n"
    assert await counter([key], ["ok"]) == 1
    if not is_cluster(bus.redis):
        await bus.redis.script_flush()  # as after a Redis restart
    results = await asyncio.gather(
        counter([key], ["ok"]),
        counter([key], ["bad"]),
        counter([key], ["ok"]),
        return_exceptions=True,
    )
    assert results[0] == 2 and results[2] == 3, results  # in order, each once
    assert isinstance(results[1], aioredis.ResponseError) and "bad call" in str(results[1])
    assert int(await bus.redis.get(key)) == 3


async def test_tickets_asked_at_once_are_each_counted(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_TICKET_RATE_LIMIT="3")
    session = await server.live_session()
    token = server.token(name("burst"))

    async def ticket() -> int:
        status, _ = await server.call(
            "POST", "/v1/vstudio/ticket", token=token, json={"sessionId": session["id"]}
        )
        return status

    statuses = await asyncio.gather(*(ticket() for _ in range(6)))
    assert sorted(statuses) == [200, 200, 200, 429, 429, 429], statuses


async def test_a_turns_session_reads_are_one_and_a_later_one_sees_the_end(bus: Bus) -> None:
    store = SessionStore(bus)
    session = await store.create(Session(id=name("s"), artist_id="a", title="storm"))
    reads = store._shared_reads.reads
    found = await asyncio.gather(*(store.get_shared(session.id) for _ in range(5)))
    assert store._shared_reads.reads == reads + 1 and all(s.id == session.id for s in found)
    await bus.redis.hset(keys.session(session.id), "status", orjson.dumps("ended"))
    assert (await store.get_shared(session.id)).status == SessionStatus.ENDED
    with pytest.raises(ProtocolError) as refused:
        await store.get_shared(name("missing"))
    assert refused.value.code == ErrorCode.SESSION_NOT_FOUND
