"""Work shared per loop turn: one read per key, one batch per turn, never an earlier read."""

from __future__ import annotations

import asyncio

import pytest

from server.turns import LINGER, TurnBatch, TurnShare


async def test_callers_of_one_turn_share_one_read() -> None:
    asked: list[str] = []

    async def read(key: str) -> list[str]:
        asked.append(key)
        await asyncio.sleep(0.01)
        return [key]

    share: TurnShare[str, list[str]] = TurnShare(read)
    a, b, c = await asyncio.gather(share.get("s1"), share.get("s1"), share.get("s2"))
    assert asked == ["s1", "s2"]
    assert a is b and a == ["s1"] and c == ["s2"]
    assert share.reads == 2


async def test_a_read_in_flight_is_not_shared_with_a_later_caller() -> None:
    """A caller that arrives after the read started may need what that read cannot see."""
    started = asyncio.Event()
    release = asyncio.Event()
    asked = 0

    async def read(key: str) -> int:
        nonlocal asked
        asked += 1
        started.set()
        await release.wait()
        return asked

    share: TurnShare[str, int] = TurnShare(read)
    first = asyncio.ensure_future(share.get("k"))
    await started.wait()  # the read is at Redis now
    second = asyncio.ensure_future(share.get("k"))
    await asyncio.sleep(0)
    release.set()
    assert await first == 1
    assert await second == 2
    assert share.reads == 2


async def test_an_error_reaches_every_caller_and_a_cancel_only_its_own() -> None:
    async def fail(key: str) -> int:
        await asyncio.sleep(0.01)
        raise RuntimeError(f"no {key}")

    share: TurnShare[str, int] = TurnShare(fail)
    results = await asyncio.gather(share.get("x"), share.get("x"), return_exceptions=True)
    assert [str(r) for r in results] == ["no x", "no x"]

    async def slow(key: str) -> str:
        await asyncio.sleep(0.02)
        return key

    share2: TurnShare[str, str] = TurnShare(slow)
    gone = asyncio.ensure_future(share2.get("y"))
    kept = asyncio.ensure_future(share2.get("y"))
    await asyncio.sleep(0.005)
    gone.cancel()
    assert await kept == "y"
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_a_batch_gets_one_call_per_turn_and_each_caller_its_own_result() -> None:
    calls: list[list[int]] = []

    async def run(args: list[int]) -> list[int]:
        calls.append(args)
        return [n * 10 for n in args]

    batch: TurnBatch[int, int] = TurnBatch(run)
    assert await asyncio.gather(*(batch.call(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert await batch.call(7) == 70
    assert calls == [[0, 1, 2, 3, 4], [7]]
    assert batch.batches == 2


async def test_a_failed_batch_fails_every_caller_of_it() -> None:
    async def run(args: list[int]) -> list[int]:
        raise ConnectionError("redis down")

    batch: TurnBatch[int, int] = TurnBatch(run)
    results = await asyncio.gather(batch.call(1), batch.call(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_what_is_asked_while_a_batch_runs_goes_in_one_next_batch() -> None:
    """Group commit: one batch in flight; the calls made meanwhile wait and go together."""
    calls: list[list[int]] = []
    release = asyncio.Event()

    async def run(args: list[int]) -> list[int]:
        calls.append(args)
        if len(calls) == 1:
            await release.wait()
        return [n + 1 for n in args]

    batch: TurnBatch[int, int] = TurnBatch(run)
    first = asyncio.ensure_future(batch.call(0))
    await asyncio.sleep(0.01)  # the first batch is in flight
    later = [asyncio.ensure_future(batch.call(n)) for n in (1, 2, 3)]
    await asyncio.sleep(0.01)
    assert calls == [[0]]  # nothing else started meanwhile
    release.set()
    assert await first == 1
    assert await asyncio.gather(*later) == [2, 3, 4]
    assert calls == [[0], [1, 2, 3]]
    assert await batch.call(9) == 10  # idle again: a new call starts at once
    assert batch.batches == 3


async def test_a_cancelled_caller_leaves_its_batch_and_the_others_results() -> None:
    """Each caller waits on a future of its own: cancelling one neither cancels the batch nor
    shifts the others' results (the batch still runs the cancelled caller's argument)."""
    calls: list[list[int]] = []

    async def run(args: list[int]) -> list[int]:
        calls.append(args)
        await asyncio.sleep(0.02)
        return [n * 10 for n in args]

    batch: TurnBatch[int, int] = TurnBatch(run)
    callers = [asyncio.ensure_future(batch.call(n)) for n in range(3)]
    await asyncio.sleep(0.005)  # the batch is in flight
    callers[1].cancel()
    assert await callers[0] == 0
    assert await callers[2] == 20
    with pytest.raises(asyncio.CancelledError):
        await callers[1]
    assert calls == [[0, 1, 2]]
    assert await batch.call(4) == 40  # and the next batch runs as usual


async def test_a_share_whose_callers_all_left_still_serves_the_next_turn() -> None:
    async def slow(key: str) -> str:
        await asyncio.sleep(0.01)
        return key

    share: TurnShare[str, str] = TurnShare(slow)
    gone = asyncio.ensure_future(share.get("z"))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await share.get("z") == "z"
    assert share.reads == 2


async def test_submitted_calls_of_one_turn_share_a_batch_without_tasks() -> None:
    calls: list[list[int]] = []

    async def run(args: list[int]) -> list[int]:
        calls.append(args)
        return [-n for n in args]

    batch: TurnBatch[int, int] = TurnBatch(run)
    futures = [batch.submit(n) for n in (1, 2, 3)]
    assert [await future for future in futures] == [-1, -2, -3]
    assert calls == [[1, 2, 3]]


async def test_a_storm_lingers_for_more_calls_and_a_lone_caller_never_waits() -> None:
    """After a batch of several calls the next batch waits :data:`LINGER` for more, so calls
    made turns apart still go together; after a batch of one it starts on the next turn."""
    calls: list[list[int]] = []

    async def run(args: list[int]) -> list[int]:
        calls.append(args)
        return args

    batch: TurnBatch[int, int] = TurnBatch(run)

    async def two_turns_apart(first: int, second: int) -> None:
        one = batch.submit(first)
        await asyncio.sleep(0)
        other = batch.submit(second)
        assert await asyncio.gather(one, other) == [first, second]

    await two_turns_apart(0, 1)  # quiet: 0 goes alone, 1 follows it
    assert calls == [[0], [1]]
    assert await asyncio.gather(*(batch.call(n) for n in (2, 3, 4))) == [2, 3, 4]  # a storm
    await two_turns_apart(5, 6)  # lingered: together
    assert calls[-1] == [5, 6]
    assert await batch.call(7) == 7  # lingered too, but alone: the storm is over
    await two_turns_apart(8, 9)
    assert calls[-2:] == [[8], [9]]


async def test_a_lingering_batch_starts_after_linger_not_before() -> None:
    started: list[float] = []

    async def run(args: list[int]) -> list[int]:
        started.append(asyncio.get_running_loop().time())
        return args

    batch: TurnBatch[int, int] = TurnBatch(run)
    await asyncio.gather(batch.call(1), batch.call(2))
    asked = asyncio.get_running_loop().time()
    assert await batch.call(3) == 3
    assert started[-1] - asked >= LINGER * 0.9  # the loop's clock may round a little
