"""Open connections are capped per user and per address across server processes, and a dead
socket gives its place back at once (issue 13)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from broker import connect, keys
from server.presence import ConnectionLimit, ConnectionQuota, place_batches
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def raw_ws(
    server: LiveServer, sid: str, user: str, source: str | None = None
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    ticket = await server.ticket(server.token(user), sid)
    connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.ws_connect(f"{server.ws_url}?ticket={ticket}") as ws,
    ):
        yield ws


REASONS: dict[int, str] = {}
"""The close reason of each refused socket, by id()."""


async def admitted(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """True when the server sent session.state; False when it closed with 4008."""
    message = await ws.receive(timeout=10)
    if message.type == aiohttp.WSMsgType.TEXT:
        return True
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 4008, message
    REASONS[id(ws)] = str(message.extra)
    return False


async def test_a_users_connections_are_capped_across_processes(
    server_factory: ServerFactory,
) -> None:
    caps = {"VSTUDIO_MAX_CONNECTIONS_PER_USER": "2"}
    first = server_factory(**caps)
    second = server_factory(**caps)
    session = await first.live_session()
    sid = session["id"]
    async with raw_ws(first, sid, "many") as one, raw_ws(second, sid, "many") as two:
        assert await admitted(one) and await admitted(two)
        async with raw_ws(first, sid, "many") as three:
            assert not await admitted(three)
            reason = REASONS[id(three)]
        assert "this account" in reason and "limit is 2" in reason, reason
        status, body = await second.call(
            "GET", f"/v1/vstudio/sse/{sid}", token=second.token("many")
        )
        assert status == 429 and body["code"] == 4008, body
        assert "this account" in body["message"]
        async with raw_ws(second, sid, "other") as other:  # another user is not affected
            assert await admitted(other)
    async with raw_ws(second, sid, "many") as again:  # the places were given back on close
        assert await admitted(again)


async def test_connections_from_one_address_are_capped(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_MAX_CONNECTIONS_PER_ADDRESS="2")
    sid = (await server.live_session())["id"]
    async with (
        raw_ws(server, sid, "a", "127.0.0.2") as a,
        raw_ws(server, sid, "b", "127.0.0.2") as b,
    ):
        assert await admitted(a) and await admitted(b)
        async with raw_ws(server, sid, "c", "127.0.0.2") as c:
            assert not await admitted(c)
            assert "this address" in REASONS[id(c)]
        async with raw_ws(server, sid, "c", "127.0.0.3") as elsewhere:
            assert await admitted(elsewhere)


CLIENT = """
import asyncio, sys, aiohttp
async def main():
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(url) for url in sys.argv[1:]]
        for ws in sockets:
            await ws.receive()
        print("ready", flush=True)
        await asyncio.sleep(60)
asyncio.run(main())
"""


async def test_a_killed_client_gives_its_places_back(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_MAX_CONNECTIONS_PER_USER="2")
    sid = (await server.live_session())["id"]
    urls = [
        f"{server.ws_url}?ticket={await server.ticket(server.token('killed'), sid)}"
        for _ in range(2)
    ]
    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT, *urls], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert await asyncio.to_thread(child.stdout.readline) == "ready\n"
        async with raw_ws(server, sid, "killed") as full:
            assert not await admitted(full)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 5  # the kernel resets the sockets; no 30 s expiry wait
        while True:
            async with raw_ws(server, sid, "killed") as one, raw_ws(server, sid, "killed") as two:
                if await admitted(one) and await admitted(two):
                    break
            assert time.monotonic() < deadline, "the killed client's places were not given back"
            await asyncio.sleep(0.2)
    finally:
        child.kill()
        child.wait()


async def test_places_of_a_process_that_died_expire_and_a_live_ones_are_kept(
    redis_url: str,
) -> None:
    client = await connect(redis_url)
    user = f"u{uuid.uuid4().hex[:8]}"
    try:
        dead = ConnectionQuota(client, "dead", 1, 0, entry_ttl=0.5)
        alive = ConnectionQuota(client, "alive", 1, 0, entry_ttl=0.5)
        await dead.admit(user, None)  # its process never refreshes again
        with pytest.raises(ConnectionLimit, match="limit is 1"):
            await alive.admit(user, None)
        await asyncio.sleep(0.6)
        await alive.admit(user, None)  # the dead process's place expired
        for _ in range(3):  # refreshed, the live place outlasts its TTL
            await asyncio.sleep(0.3)
            await alive.refresh()
        with pytest.raises(ConnectionLimit):
            await dead.admit(user, None)
        await alive.clear()
        await dead.admit(user, None)
    finally:
        await client.aclose()


def test_a_refresh_is_planned_in_bounded_round_trips() -> None:
    """10,000 places in one pipeline held a server's loop for ~0.3 s every 10 s (fan-out p99
    at 10,000 viewers went from ~180 to ~450 ms); each round trip now carries a bounded part."""
    held = {f"p|{n}": [f"user:{n}", "address:a"] for n in range(1234)}
    batches = list(place_batches(held, expiry=99, size=100))
    assert all(sum(len(scored) for _, scored in batch) <= 100 for batch in batches)
    seen = [(key, member) for batch in batches for key, scored in batch for member in scored]
    assert sorted(seen) == sorted((key, m) for m, taken in held.items() for key in taken)
    assert sum(key == "address:a" for batch in batches for key, _ in batch) == 25  # split
    assert len(batches) <= 2 * 1234 // 100 + 2  # and the parts packed, not one key per trip
    assert all(score == 99 for batch in batches for _, scored in batch for score in scored.values())
    assert list(place_batches({}, expiry=1, size=10)) == []


def test_a_refresh_makes_each_round_trip_when_it_sends_it() -> None:
    """All of a refresh's batches made at once held ~240 bytes per connection for the whole
    spread-out refresh; made one at a time, a place given back meanwhile is left out."""
    held = {f"p|{n}": [f"user:{n}"] for n in range(300)}
    batches = place_batches(held, expiry=1, size=100)
    first = next(batches)
    del held["p|250"]
    rest = [member for batch in batches for _, scored in batch for member in scored]
    assert len(first) == 100 and len(rest) == 199 and "p|250" not in rest


async def test_a_refresh_in_many_round_trips_keeps_every_place(redis_url: str) -> None:
    client = await connect(redis_url)
    users = [f"r{uuid.uuid4().hex[:8]}" for _ in range(300)]
    address = f"a{uuid.uuid4().hex[:8]}"
    try:
        quota = ConnectionQuota(client, "many", 1, 1000, entry_ttl=2.0, refresh_size=64)
        await asyncio.gather(*(quota.admit(user, address) for user in users))
        for _ in range(3):  # refreshed in 10 round trips each time, every place outlasts its TTL
            await asyncio.sleep(0.8)
            await quota.refresh()
        other = ConnectionQuota(client, "other", 1, 0)
        for user in (users[0], users[150], users[-1]):
            with pytest.raises(ConnectionLimit):
                await other.admit(user, None)
        now = int(time.time() * 1000)
        assert await client.zcount(keys.address_connections(address), now, "+inf") == 300
        await quota.clear()
        await other.admit(users[-1], None)
    finally:
        await client.aclose()


async def test_a_spread_refresh_moves_its_parts_over_the_interval(redis_url: str) -> None:
    """The parts go out ``spread`` seconds apart in all: early places are pushed first, the
    last ones later, and every place is pushed by the end."""
    client = await connect(redis_url)
    users = [f"s{uuid.uuid4().hex[:8]}" for _ in range(256)]
    try:
        quota = ConnectionQuota(client, "spread", 1, 0, entry_ttl=5.0, refresh_size=64)
        members = {user: (await quota.admit(user, None))[-1] for user in users}

        async def score(user: str) -> float:
            return float(await client.zscore(keys.user_connections(user), members[user]) or 0)

        before = {user: await score(user) for user in users}
        refresh = asyncio.create_task(quota.refresh(spread=1.2))
        await asyncio.sleep(0.3)
        assert await score(users[0]) > before[users[0]]  # the first part went out at once
        assert await score(users[-1]) == before[users[-1]]  # the last one waits its turn
        await refresh
        assert [user for user in users if await score(user) <= before[user]] == []
    finally:
        await client.aclose()


async def test_a_place_given_back_during_a_spread_refresh_stays_given_back(
    redis_url: str,
) -> None:
    """The refresh planned its parts before the release: a later part must not bring the
    place back (``ZADD XX``), or the user's cap would count a closed connection."""
    client = await connect(redis_url)
    users = [f"g{uuid.uuid4().hex[:8]}" for _ in range(256)]
    try:
        quota = ConnectionQuota(client, "giveback", 1, 0, entry_ttl=5.0, refresh_size=64)
        holds = [await quota.admit(user, None) for user in users]
        refresh = asyncio.create_task(quota.refresh(spread=0.9))
        await asyncio.sleep(0.2)
        await quota.release(holds[-1])
        await refresh
        assert await client.zscore(keys.user_connections(users[-1]), holds[-1][-1]) is None
        await ConnectionQuota(client, "other", 1, 0).admit(users[-1], None)
    finally:
        await client.aclose()


async def test_both_caps_of_a_storm_go_in_one_batch_and_a_refusal_gives_the_other_back(
    redis_url: str,
) -> None:
    """The user and address caps of every admit in one loop turn are one round trip; a user
    over its cap gives back the address place it was admitted to, and the reverse."""
    client = await connect(redis_url)
    users = [f"b{uuid.uuid4().hex[:8]}" for _ in range(20)]
    address, crowded = f"a{uuid.uuid4().hex[:8]}", f"a{uuid.uuid4().hex[:8]}"
    try:
        quota = ConnectionQuota(client, "batch", 1, 5)
        holds = await asyncio.gather(
            *(
                quota.admit(user, address if n < 5 else f"{address}-{n}")
                for n, user in enumerate(users)
            )
        )
        assert quota._admit.batches == 1  # 40 script runs, one pipeline
        assert all(len(hold) == 3 for hold in holds)
        with pytest.raises(ConnectionLimit, match="this account"):
            await quota.admit(users[0], crowded)  # the user is full: the address place goes back
        assert await client.zcard(keys.address_connections(crowded)) == 0
        newcomer = f"n{uuid.uuid4().hex[:8]}"
        with pytest.raises(ConnectionLimit, match="this address"):
            await quota.admit(newcomer, address)  # the address is full: the user place goes back
        assert await client.zcard(keys.user_connections(newcomer)) == 0
        await quota.clear()
    finally:
        await client.aclose()
