"""Viewer counts across processes in Redis: distinct users, the maximum, a dead process."""

from __future__ import annotations

import asyncio

import pytest

from broker import Bus
from server.presence import Presence, SessionFull


async def test_distinct_users_across_processes(bus: Bus, session_id: str) -> None:
    one, two = Presence(bus.redis, "p1", 100), Presence(bus.redis, "p2", 100)
    assert await one.join(session_id, "ann") == (True, 1)
    assert await one.join(session_id, "ann") == (False, 1)  # second tab, same user
    assert await two.join(session_id, "ann") == (False, 1)  # same user on another process
    assert await two.join(session_id, "bob") == (True, 2)
    assert await one.leave(session_id, "ann") == (False, 2)
    assert await one.leave(session_id, "ann") == (False, 2)  # still on process two
    assert await two.leave(session_id, "ann") == (True, 1)
    assert await one.count(session_id) == 1


async def test_a_burst_of_joins_is_batched_and_the_maximum_holds(bus: Bus, session_id: str) -> None:
    one, two = Presence(bus.redis, "p1", 150), Presence(bus.redis, "p2", 150)
    outcomes = await asyncio.gather(
        *(one.join(session_id, f"u{n}") for n in range(100)),
        *(two.join(session_id, f"w{n}") for n in range(100)),
        return_exceptions=True,
    )
    full = [o for o in outcomes if isinstance(o, SessionFull)]
    assert len(full) == 50 and await one.count(session_id) == 150
    with pytest.raises(SessionFull):
        await one.join(session_id, "late")
    assert await one.join(session_id, "u0") == (False, 150)  # a known user still joins


async def test_entries_of_a_dead_process_expire(bus: Bus, session_id: str) -> None:
    dying = Presence(bus.redis, "dies", 100, entry_ttl=0.3)
    alive = Presence(bus.redis, "lives", 100, entry_ttl=0.3)
    await dying.join(session_id, "ghost")
    await alive.join(session_id, "real")
    assert await alive.count(session_id) == 2
    for _ in range(4):
        await asyncio.sleep(0.15)
        await alive.refresh()  # only the live process keeps refreshing
    assert await alive.count(session_id) == 1


async def test_users_back_from_a_crashed_process_are_no_news(bus: Bus, session_id: str) -> None:
    """After a crash, the dead process's entries count its users until they expire: a user
    who reconnects elsewhere meanwhile did not join the session (no ``session.join`` each in
    a storm of thousands), and one who never comes back leaves with the entry."""
    crashed = Presence(bus.redis, "crashed", 100, entry_ttl=0.5)
    fresh = Presence(bus.redis, "fresh", 100)
    await asyncio.gather(crashed.join(session_id, "ann"), crashed.join(session_id, "bob"))
    assert await fresh.join(session_id, "ann") == (False, 2)
    await asyncio.sleep(0.6)  # the crashed process's entries expire; ann's new one lives
    assert await fresh.join(session_id, "cy") == (True, 2)
    assert await fresh.leave(session_id, "ann") == (True, 1)


async def test_clear_removes_this_process_only(bus: Bus, session_id: str) -> None:
    one, two = Presence(bus.redis, "p1", 10_000), Presence(bus.redis, "p2", 10_000)
    await asyncio.gather(*(one.join(session_id, f"x{n}") for n in range(600)))
    await two.join(session_id, "stay")
    await one.clear()
    assert await two.count(session_id) == 1


async def test_a_second_connection_shares_the_fate_of_a_refused_first(
    bus: Bus, session_id: str
) -> None:
    """Two connections of one user racing into a full session are both refused; the user is
    not counted later by a refresh."""
    presence = Presence(bus.redis, "p1", 1)
    await presence.join(session_id, "someone")
    outcomes = await asyncio.gather(
        presence.join(session_id, "late"),
        presence.join(session_id, "late"),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, SessionFull) for outcome in outcomes), outcomes
    await presence.refresh()
    assert await presence.count(session_id) == 1


async def test_a_leave_and_rejoin_in_one_loop_turn_keeps_the_user_counted(
    bus: Bus, session_id: str
) -> None:
    """A reconnect whose close and new connection land in the same loop iteration: Redis must
    see the leave before the join, or the join is a no-op and the leave removes the user."""
    one = Presence(bus.redis, "p1", 100)
    assert await one.join(session_id, "ann") == (True, 1)
    left, joined = await asyncio.gather(one.leave(session_id, "ann"), one.join(session_id, "ann"))
    assert left[0] is True and joined[0] is True
    assert await one.count(session_id) == 1
    assert await one.leave(session_id, "ann") == (True, 0)
