"""Work shared by the callers of one event-loop turn: one read per key, one batch per turn.

In a reconnect storm thousands of clients of the same session arrive within a few turns and
each would read the same session record and the same replay, and send its own ticket command.
:class:`TurnShare` gives every caller that asks for a key in one turn the result of a single
call, started on the next turn; :class:`TurnBatch` hands the arguments of one turn to one call
(a pipeline). Work starts only after the turn in which it was asked for, never earlier, so a
caller that registered for live events before asking still has everything after the read: a
read already in flight is never shared with a later caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

__all__ = ["TurnBatch", "TurnShare"]

K = TypeVar("K", bound=Hashable)
A = TypeVar("A")
V = TypeVar("V")


def _settle(done: asyncio.Future[V], into: list[asyncio.Future[V]]) -> None:
    for future in into:
        if future.done():
            continue
        if done.cancelled():
            future.cancel()
        elif (exc := done.exception()) is not None:
            future.set_exception(exc)
        else:
            future.set_result(done.result())


class TurnShare(Generic[K, V]):
    """``read(key)`` once per key per turn, its result (or error) given to every caller.

    The result is shared, so callers must not change it.
    """

    def __init__(self, read: Callable[[K], Awaitable[V]]) -> None:
        self.read = read
        self._due: dict[K, asyncio.Future[V]] = {}
        self.reads = 0
        """Reads started (for tests and benchmarks: how much was shared)."""

    async def get(self, key: K) -> V:
        future = self._due.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._due[key] = loop.create_future()
            loop.call_soon(self._start, key, future)
        return await asyncio.shield(future)  # one caller's cancel leaves the others' read

    def _start(self, key: K, future: asyncio.Future[V]) -> None:
        del self._due[key]
        self.reads += 1
        task = asyncio.ensure_future(self.read(key))
        task.add_done_callback(lambda done: _settle(done, [future]))


class TurnBatch(Generic[A, V]):
    """``run(arguments)`` once per turn for every argument given in it; one result each."""

    def __init__(self, run: Callable[[list[A]], Awaitable[Sequence[V]]]) -> None:
        self.run = run
        self._args: list[A] = []
        self._futures: list[asyncio.Future[V]] = []
        self.batches = 0

    async def call(self, argument: A) -> V:
        loop = asyncio.get_running_loop()
        if not self._args:
            loop.call_soon(self._start)
        future: asyncio.Future[V] = loop.create_future()
        self._args.append(argument)
        self._futures.append(future)
        return await asyncio.shield(future)

    def _start(self) -> None:
        args, futures = self._args, self._futures
        self._args, self._futures = [], []
        self.batches += 1
        task = asyncio.ensure_future(self.run(args))
        task.add_done_callback(lambda done: self._settle(done, futures))

    @staticmethod
    def _settle(done: asyncio.Future[Sequence[V]], futures: list[asyncio.Future[V]]) -> None:
        if done.cancelled():
            for future in futures:
                future.cancel()
            return
        if (exc := done.exception()) is not None:
            for future in futures:  # an error: the same for all
                if not future.done():
                    future.set_exception(exc)
            return
        for future, value in zip(futures, done.result(), strict=True):
            if not future.done():
                future.set_result(value)
