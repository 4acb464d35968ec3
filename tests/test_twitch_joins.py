"""Twitch's JOIN limit per account across processes (issue 15): the rule in Redis matches the
pure pacer, pools on separate Redis clients (and worker processes) logging in as one account
share one window as the local Twitch server sees it, other accounts do not, and a Redis that
is gone or silent leaves each pool pacing itself."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from broker import Bus, connect, keys
from broker.sources import SourceSpec, SourceStore
from config import IngestSettings
from ingest.runtime import PUBLISH_ERRORS
from ingest.twitch_joins import SHARED_TIMEOUT, JoinPacer, SharedJoins
from ingest.twitch_pool import TwitchPool
from tests.support.fleet import spawn_worker, stop_all, worker_env
from tests.support.loopback import free_port
from tests.support.platforms.twitch_irc import TwitchIrcServer
from tests.support.redis import start_private_redis
from tests.test_fleet import live_session
from tests.test_ingest_twitch import fast_settings, until

TOKENS = {"tok-alpha", "tok-beta"}


@pytest.fixture
async def server() -> AsyncIterator[TwitchIrcServer]:
    async with TwitchIrcServer(valid_tokens=TOKENS) as running:
        yield running


@pytest.fixture
def fleet() -> str:
    return f"j{uuid.uuid4().hex[:10]}"


def most_in_any_span(times: list[float], span: float) -> int:
    """The most JOINs the server saw within ``span`` seconds of one another."""
    times = sorted(times)
    return max((sum(1 for t in times if start <= t < start + span) for start in times), default=0)


def logged_in(nick: str, url: str, limit: int, window: float) -> IngestSettings:
    """Settings that log in as ``nick`` (token ``tok-<nick>``) with the JOIN limit given."""
    return fast_settings(
        url,
        twitch_nick=nick,
        twitch_token=f"tok-{nick}",
        twitch_join_limit=limit,
        twitch_join_window_seconds=window,
    )


async def join_all(
    server: TwitchIrcServer, pools: list[TwitchPool], per_pool: int, timeout: float = 30
) -> None:
    """Run ``per_pool`` channels on each pool until the server saw every JOIN, then close."""
    tasks = [
        asyncio.create_task(pool.adapter(f"p{n}c{i}").run(lambda item: None))
        for n, pool in enumerate(pools)
        for i in range(per_pool)
    ]
    try:
        await until(lambda: len(server.joins) == len(tasks), timeout)
    finally:
        for pool in pools:
            await pool.aclose()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- the rule ------------------------------------------------------------------------------


async def test_the_redis_window_keeps_the_pacers_rule_to_the_millisecond(
    bus: Bus, fleet: str
) -> None:
    """Same JOIN times into both: the same waits, at the window's edge too (a JOIN at t counts
    until t + window, excluded)."""
    # a 10 s window: the key's expiry (real time) never drops it while the test runs
    shared = SharedJoins(bus.redis, keys.fleet_twitch_joins(fleet, "rule"), 3, 10.0)
    pacer = JoinPacer(3, 10_000.0)
    edge = [0, 0, 0, 1, 5000, 9999, 10_000, 10_000, 10_001, 10_001, 15_000, 19_999]
    times = [*edge, 20_000, 20_000, 20_001, 40_000]
    seen = []
    for now in times:
        expected = pacer.delay(now)
        if expected == 0:
            pacer.record(now)
        wait_ms = round(await shared.try_take(now_ms=now) * 1000)
        seen.append((now, wait_ms, expected))
    assert all(wait == expected for _, wait, expected in seen), seen
    granted = [now for now, wait, _ in seen if wait == 0]
    assert granted == [0, 0, 0, 10_000, 10_000, 10_001, 20_000, 20_000, 20_001, 40_000]


def test_the_window_is_named_by_fleet_and_login_never_the_token(fleet: str) -> None:
    client = aioredis.Redis()  # never connects: only the key is looked at
    settings = fast_settings("ws://127.0.0.1:1/", twitch_nick="BotOne", twitch_token="s3cret")
    pool = TwitchPool(settings, redis=client, fleet=fleet)
    assert pool.turns.shared is not None
    assert pool.turns.shared.key == keys.fleet_twitch_joins(fleet, "botone")
    assert pool.turns.shared.key.startswith(keys.fleet_prefix(fleet))
    assert "s3cret" not in pool.turns.shared.key
    other = fast_settings("ws://127.0.0.1:1/", twitch_nick="bottwo", twitch_token="s3cret")
    second = TwitchPool(other, redis=client, fleet=fleet).turns.shared
    assert second is not None and second.key != pool.turns.shared.key
    assert TwitchPool(settings).turns.shared is None  # no Redis: this pool alone
    # an anonymous login (justinfan<random digits>) is an account of this pool's alone
    assert TwitchPool(fast_settings("ws://x/"), redis=client, fleet=fleet).turns.shared is None


# --- pools on one Redis ----------------------------------------------------------------------


async def test_two_pools_on_separate_clients_share_one_accounts_window(
    bus: Bus, redis_url: str, server: TwitchIrcServer, fleet: str
) -> None:
    limit, window = 4, 1.0
    other = await connect(redis_url)
    settings = logged_in("alpha", server.url, limit, window)
    pools = [TwitchPool(settings, redis=client, fleet=fleet) for client in (bus.redis, other)]
    try:
        started = time.monotonic()
        await join_all(server, pools, per_pool=8)
    finally:
        await other.aclose()
    times = server.joins_by["alpha"]
    assert len(times) == 16
    # 16 JOINs at 4 per second from two pools: 4 at once, then 4 more each second
    assert max(times) - started >= (16 - limit) / limit * window * 0.95
    assert most_in_any_span(times, window * 0.8) <= limit


async def test_different_accounts_do_not_share_a_window(
    bus: Bus, server: TwitchIrcServer, fleet: str
) -> None:
    limit, window = 3, 30.0
    pools = [
        TwitchPool(
            logged_in(nick, server.url, limit, window),
            redis=bus.redis,
            fleet=fleet,
        )
        for nick in ("alpha", "beta")
    ]
    started = time.monotonic()
    await join_all(server, pools, per_pool=limit)
    assert len(server.joins_by["alpha"]) == len(server.joins_by["beta"]) == limit
    # both accounts' JOINs went at once: twice the limit well inside one window
    assert max(t for t, _ in server.joins) - started < window / 3


# --- when Redis is away ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def silent_redis() -> AsyncIterator[str]:
    """A TCP server that accepts and never answers: a Redis hung or cut off mid-way."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    listener = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        listener.close()
        await listener.wait_closed()


@pytest.mark.parametrize("how", ["refused", "silent"])
async def test_without_redis_each_pool_paces_its_own_joins(
    server: TwitchIrcServer, fleet: str, how: str
) -> None:
    limit, window = 3, 1.0
    settings = logged_in("alpha", server.url, limit, window)
    async with contextlib.AsyncExitStack() as stack:
        url = f"redis://127.0.0.1:{free_port()}"
        if how == "silent":
            url = await stack.enter_async_context(silent_redis())
        client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
        stack.push_async_callback(client.aclose)
        pool = TwitchPool(settings, redis=client, fleet=fleet)
        started = time.monotonic()
        await join_all(server, [pool], per_pool=7 if how == "refused" else 4)
    times = server.joins_by["alpha"]
    assert len(times) == (7 if how == "refused" else 4)  # every channel joined all the same
    assert most_in_any_span(times, window * 0.8) <= limit
    assert pool.turns.fallbacks >= 1
    if how == "silent":
        assert min(times) - started >= SHARED_TIMEOUT * 0.9  # it waited for Redis, then alone
        assert pool.turns.fallbacks <= 3  # not a wait per JOIN: one per window at most


@pytest.mark.slow
async def test_joins_are_counted_in_redis_again_once_it_returns(
    tmp_path: Path, server: TwitchIrcServer, fleet: str
) -> None:
    port = free_port()
    redis_server = start_private_redis(tmp_path, port)
    client = await connect(f"redis://127.0.0.1:{port}")
    settings = logged_in("alpha", server.url, 2, 0.5)
    pool = TwitchPool(settings, redis=client, fleet=fleet)
    key = keys.fleet_twitch_joins(fleet, "alpha")
    runs: list[asyncio.Task[None]] = []

    def add(name: str) -> None:
        runs.append(asyncio.create_task(pool.adapter(name).run(lambda item: None)))

    try:
        add("before")
        await until(lambda: pool.channels() == 1 and not pool._joins.qsize())
        assert await client.zcard(key) == 1
        redis_server.stop()
        for n in range(3):
            add(f"away{n}")
        await until(lambda: len(server.joins_by["alpha"]) == 4, timeout=15)
        assert pool.turns.fallbacks >= 1
        redis_server = start_private_redis(tmp_path, port)
        for _ in range(50):  # the client finds its connection broken once, then reconnects
            with contextlib.suppress(*PUBLISH_ERRORS):
                await client.ping()
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.6)  # the fallback lasts one window
        add("after")
        await until(lambda: len(server.joins_by["alpha"]) == 5, timeout=15)
        assert await client.zcard(key) == 1  # "after" was counted in Redis again
    finally:
        await pool.aclose()
        await asyncio.gather(*runs, return_exceptions=True)
        await client.aclose()
        redis_server.stop()


async def test_closing_the_pool_stops_a_join_waiting_for_the_shared_window(
    bus: Bus, server: TwitchIrcServer, fleet: str
) -> None:
    settings = logged_in("alpha", server.url, 1, 60.0)
    elsewhere = SharedJoins(bus.redis, keys.fleet_twitch_joins(fleet, "alpha"), 1, 60.0)
    assert await elsewhere.try_take() == 0.0  # another worker took the account's only JOIN
    pool = TwitchPool(settings, redis=bus.redis, fleet=fleet)
    run = asyncio.create_task(pool.adapter("waits").run(lambda item: None))
    await until(lambda: pool._joiner is not None and pool.channels() == 1)
    await asyncio.sleep(0.2)  # the JOIN is waiting for its turn
    started = time.monotonic()
    await asyncio.wait_for(pool.aclose(), 2)
    assert time.monotonic() - started < 1.0
    assert pool._joiner is not None and pool._joiner.done()
    await asyncio.gather(run, return_exceptions=True)
    assert server.joins == []


# --- worker processes ------------------------------------------------------------------------


@pytest.fixture
def processes() -> Iterator[list[object]]:
    running: list[object] = []
    yield running
    for log in stop_all(running):  # type: ignore[arg-type]
        assert "Traceback" not in log, log


@pytest.mark.slow
async def test_two_worker_processes_on_one_account_share_its_window(
    bus: Bus, redis_url: str, server: TwitchIrcServer, fleet: str, processes: list[object]
) -> None:
    limit, window, channels = 4, 1.0, 16
    session_id = await live_session(bus)
    store = SourceStore(bus.redis, fleet)
    for n in range(channels):
        await store.add(session_id, SourceSpec(platform="twitch", target=f"w{n:02d}"))
    env = worker_env(
        redis_url,
        fleet,
        server.url,
        twitch_nick="alpha",
        twitch_token="tok-alpha",
        twitch_join_limit=limit,
        twitch_join_window_seconds=window,
        fleet_reconcile_interval=0.3,
        fleet_capacity=channels // 2,  # each process reads half: both JOIN at once
    )
    processes += [spawn_worker(env), spawn_worker(env)]
    await until(lambda: len(server.joined()) == channels, timeout=60)
    assert len(server.open) == 2  # one IRC connection per process
    times = server.joins_by["alpha"]
    assert len(times) == channels
    assert max(times) - min(times) >= (channels - limit) / limit * window * 0.95
    assert most_in_any_span(times, window * 0.8) <= limit


async def test_closing_the_pool_stops_a_join_waiting_for_a_silent_redis(
    server: TwitchIrcServer, fleet: str
) -> None:
    async with silent_redis() as url:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            pool = TwitchPool(logged_in("alpha", server.url, 5, 1.0), redis=client, fleet=fleet)
            run = asyncio.create_task(pool.adapter("waits").run(lambda item: None))
            await asyncio.sleep(0.5)  # the JOIN's turn is asked of a Redis that never answers
            started = time.monotonic()
            await asyncio.wait_for(pool.aclose(), SHARED_TIMEOUT * 3)
            assert time.monotonic() - started < 0.5
            assert pool._joiner is not None and pool._joiner.done()
            await asyncio.gather(run, return_exceptions=True)
            await asyncio.sleep(SHARED_TIMEOUT)
            assert server.joins == []  # nothing went out after the close
        finally:
            await client.aclose()
