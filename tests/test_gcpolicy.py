"""The garbage collection policy, with the interpreter's real collector.

Frozen objects are invisible to collections; the policy must freeze survivors when connections
arrive, never freeze fresh garbage with them, and reclaim what frozen objects left behind once
enough connections have closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from server.gcpolicy import (
    THAW_EVERY_SECONDS,
    THAW_MIN_CLOSED,
    YOUNG_THRESHOLD,
    FreezePolicy,
    keep_collections_short,
)


class Node:
    """An object that can be in a reference cycle and be watched through a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_survivors_are_frozen_when_connections_arrive_and_not_otherwise() -> None:
    policy = FreezePolicy()
    kept = Node()
    assert policy.tick(live=0, opened=0, closed=0) is None
    assert gc.get_freeze_count() == 0
    assert policy.tick(live=3, opened=3, closed=0) == "freeze"
    frozen = gc.get_freeze_count()
    assert frozen > 0
    assert policy.tick(live=3, opened=3, closed=0) is None  # nothing new: nothing to do
    assert kept.other is None


def test_fresh_garbage_is_collected_before_a_freeze() -> None:
    policy = FreezePolicy()
    garbage = cycle()  # unreachable already: a freeze now would keep it forever
    policy.tick(live=1, opened=1, closed=0)
    assert garbage() is None


def test_cycles_left_by_frozen_objects_are_reclaimed_once_enough_connections_close() -> None:
    policy = FreezePolicy()
    holder = [Node()]
    holder[0].other = holder[0]  # a connection's objects, alive and in a cycle
    watched = weakref.ref(holder[0])
    policy.tick(live=1000, opened=1000, closed=0)
    holder.clear()  # the connection closes: its cycle is garbage, but frozen
    gc.collect()
    assert watched() is not None
    closed = max(THAW_MIN_CLOSED, 1000 // 2)
    assert policy.tick(live=1000 - closed + 1, opened=1000, closed=closed - 1) is None
    assert watched() is not None
    assert policy.tick(live=1000 - closed, opened=1000, closed=closed) == "thaw"
    assert watched() is None
    assert gc.get_freeze_count() > 0  # the survivors are frozen again


def test_frozen_garbage_waits_at_most_the_thaw_interval_when_connections_keep_coming() -> None:
    policy = FreezePolicy(thawed_at=0.0)
    holder = [Node()]
    holder[0].other = holder[0]
    watched = weakref.ref(holder[0])
    policy.tick(live=10, opened=10, closed=0, now=1.0)
    holder.clear()  # garbage now, frozen; no connection closes
    assert policy.tick(live=11, opened=11, closed=0, now=THAW_EVERY_SECONDS - 1) == "freeze"
    assert watched() is not None
    assert policy.tick(live=12, opened=12, closed=0, now=THAW_EVERY_SECONDS) == "thaw"
    assert watched() is None
    # and nothing is collected on the clock alone when nothing new was frozen
    assert policy.tick(live=12, opened=12, closed=0, now=3 * THAW_EVERY_SECONDS) is None


@dataclass
class Counts:
    live: int = 0
    opened: int = 0
    closed: int = 0


async def test_young_collections_are_rarer_but_cycles_are_still_collected() -> None:
    """A storm's objects in flight are not traversed hundreds of times a second, and garbage
    in cycles is still reclaimed by the collector on its own."""
    before = gc.get_threshold()
    task = asyncio.create_task(keep_collections_short(Counts()))
    try:
        await asyncio.sleep(0)
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
        assert YOUNG_THRESHOLD >= 10_000
        watched = cycle()
        gc.unfreeze()  # the policy froze the cycle with everything else
        keep = [Node() for _ in range(YOUNG_THRESHOLD + 1_000)]  # no explicit collect
        assert watched() is None
        del keep
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gc.set_threshold(*before)


def test_a_freeze_collects_the_youngest_generation_only() -> None:
    """What survived a young collection since the last freeze is frozen without being traversed
    again: in a connect storm that is most of the connections of the last second."""
    generations: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    policy = FreezePolicy()
    gc.callbacks.append(watch)
    try:
        assert policy.tick(live=5, opened=5, closed=0) == "freeze"
    finally:
        gc.callbacks.remove(watch)
    assert generations == [0]
