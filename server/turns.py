"""Work shared by the callers of one event-loop turn: one read per key, one batch per turn.

In a reconnect storm thousands of clients of the same session arrive within a few turns and
each would read the same session record and the same replay, and send its own ticket command.
:class:`TurnShare` gives every caller that asks for a key in one turn the result of a single
call, started on the next turn; :class:`TurnBatch` hands the arguments of one turn to one call
(a pipeline). Work starts only after the turn in which it was asked for, never earlier, so a
caller that registered for live events before asking still has everything after the read: a
read already in flight is never shared with a later caller. In a storm (the last batch carried
more than one call) a batch also waits :data:`LINGER` for more. :class:`TurnScript` is a
:class:`TurnBatch` of one Lua script's calls: the rate-limit and connection-cap checks of a
storm's clients cost one round trip per turn, each call still run (and counted) on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from broker.connection import is_cluster
from broker.scripts import Script

__all__ = ["LINGER", "TurnBatch", "TurnScript", "TurnShare"]

K = TypeVar("K", bound=Hashable)
A = TypeVar("A")
V = TypeVar("V")


LINGER = 0.005
"""Seconds a batch waits for more calls once the last one carried more than one (a storm).

Group commit alone makes a batch of what arrived during the last round trip, about 0.1 ms:
in a storm of 10,000 reconnects or votes over a few seconds that is one or two calls, and a
round trip through redis-py costs 80-90 us of CPU here whatever it carries. Waiting up to this
long makes the batches several times larger; a caller that is alone (its batch of one) is
never made to wait, so a quiet server and a client awaiting its calls one by one see no delay.
"""


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
        self._due: dict[K, list[asyncio.Future[V]]] = {}
        self.reads = 0
        """Reads started (for tests and benchmarks: how much was shared)."""

    async def get(self, key: K) -> V:
        # each caller awaits a future of its own, so one caller's cancel leaves the others'
        # read without an ``asyncio.shield`` per caller (a future and two callbacks each)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        waiting = self._due.get(key)
        if waiting is None:
            waiting = self._due[key] = []
            loop.call_soon(self._start, key)
        waiting.append(future)
        return await future

    def _start(self, key: K) -> None:
        waiting = self._due.pop(key)
        self.reads += 1
        task = asyncio.ensure_future(self.read(key))
        task.add_done_callback(lambda done: _settle(done, waiting))


class TurnBatch(Generic[A, V]):
    """``run(arguments)`` once per turn for every argument given in it; one result each.

    One batch is in flight at a time: what is asked for while it runs waits and goes in the
    next batch, started as soon as it ends (group commit). Under load the batches grow by
    themselves, so a storm costs fewer round trips; when idle a call waits for none.
    """

    def __init__(self, run: Callable[[list[A]], Awaitable[Sequence[V]]]) -> None:
        self.run = run
        self._args: list[A] = []
        self._futures: list[asyncio.Future[V]] = []
        self._running = False
        self._crowded = False
        """The last batch carried more than one call: the next one lingers (:data:`LINGER`)."""
        self.batches = 0

    async def call(self, argument: A) -> V:
        return await self.submit(argument)  # its own future: a cancel drops only its result

    def submit(self, argument: A) -> asyncio.Future[V]:
        """Put ``argument`` in this turn's batch now; the future of its result. Several calls
        made at once without a task each (``asyncio.gather`` makes one per coroutine)."""
        loop = asyncio.get_running_loop()
        if not self._args and not self._running:
            if self._crowded:
                loop.call_later(LINGER, self._start)
            else:
                loop.call_soon(self._start)
        future: asyncio.Future[V] = loop.create_future()
        self._args.append(argument)
        self._futures.append(future)
        return future

    def _start(self) -> None:
        args, futures = self._args, self._futures
        self._args, self._futures = [], []
        self._running = True
        self._crowded = len(args) > 1
        self.batches += 1
        task = asyncio.ensure_future(self.run(args))
        task.add_done_callback(lambda done: self._ended(done, futures))

    def _ended(self, done: asyncio.Future[Sequence[V]], futures: list[asyncio.Future[V]]) -> None:
        self._running = False
        self._settle(done, futures)
        if self._args:  # asked for while that batch ran
            self._start()

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


ScriptCall = tuple[list[Any], list[Any]]
"""One call of a script: its keys and its arguments."""


class TurnScript:
    """A Lua script whose calls of one loop turn go to Redis together.

    On one Redis they are one pipeline of ``EVALSHA`` (one round trip; the script is loaded
    once if Redis does not know it, and only the calls it refused are sent again); on a
    cluster, where each call may live on another shard, they run side by side. Each call is
    still its own script run, in the order the calls were made, with its own reply or error:
    two calls on one key in one turn see each other as two calls made one after the other.
    """

    def __init__(self, client: aioredis.Redis, source: str) -> None:
        self.redis = client
        self.script = Script(client, source)
        self.sharded = is_cluster(client)
        self._turns: TurnBatch[ScriptCall, object] = TurnBatch(self._run)

    @property
    def batches(self) -> int:
        """Batches sent so far (for tests: how many calls went together)."""
        return self._turns.batches

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return self.reply(await self._turns.submit((list(keys), list(args))))

    def submit(self, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[object]:
        """Put one call in this turn's batch now; await the future, then :meth:`reply` it."""
        return self._turns.submit((list(keys), list(args)))

    @staticmethod
    def reply(answer: object) -> Any:
        """A call's reply, or its error raised."""
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def _run(self, calls: list[ScriptCall]) -> list[object]:
        if self.sharded:  # redis-py's cluster pipeline refuses EVALSHA
            runs = (self.script(keys=keys, args=args) for keys, args in calls)
            return list(await asyncio.gather(*runs, return_exceptions=True))
        replies: list[object] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for at in todo:
                    keys, args = calls[at]
                    pipe.evalsha(self.script.sha, len(keys), *keys, *args)
                answers = await pipe.execute(raise_on_error=False)
            for at, answer in zip(todo, answers, strict=True):
                replies[at] = answer
            # Redis did not know the script (a restart, SCRIPT FLUSH): those calls did not run
            todo = [at for at in todo if isinstance(replies[at], NoScriptError)]
            if not todo:
                break
            await self.redis.script_load(self.script.source)
        return replies
