"""Waiting loops stop when their task is cancelled, even if a library swallowed the cancel."""

from __future__ import annotations

import asyncio

import pytest

from ingest.base import check_cancelled


async def test_a_swallowed_cancel_still_stops_a_checking_loop() -> None:
    rounds = 0

    async def library_call() -> None:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            pass  # what redis-py may do mid-command on Python 3.11

    async def waiting_loop() -> None:
        nonlocal rounds
        while True:
            await library_call()
            check_cancelled()
            rounds += 1

    task = asyncio.create_task(waiting_loop())
    await asyncio.sleep(0.03)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)
    assert rounds < 10


async def test_an_uncancelled_task_goes_on() -> None:
    check_cancelled()  # nothing asked it to stop
