"""Shutdown never hangs on a background task that absorbs its cancel."""

from __future__ import annotations

import asyncio
import logging

import pytest

from broker.tasks import stop_task


async def stubborn(absorb: int | None, stopped: asyncio.Event) -> None:
    """Swallow the first ``absorb`` cancels (every one if None), as redis-py may mid-command."""
    absorbed = 0
    while not stopped.is_set():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if absorb is not None and absorbed >= absorb:
                raise
            absorbed += 1


async def test_a_cancel_absorbed_twice_is_repeated_until_the_task_ends() -> None:
    task = asyncio.create_task(stubborn(2, asyncio.Event()), name="stubborn")
    await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await stop_task(task, timeout=5, every=0.1)
    assert task.cancelled()
    assert loop.time() - started < 1.0


async def test_a_task_that_never_ends_is_left_behind_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopped = asyncio.Event()
    task = asyncio.create_task(stubborn(None, stopped), name="never-stops")
    await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="vstudio.broker.tasks"):
        assert not await stop_task(task, timeout=0.5, every=0.1)
    assert 0.5 <= loop.time() - started < 1.5
    assert "never-stops" in caplog.text
    stopped.set()
    await task


async def test_an_error_the_task_ended_with_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken(), name="broken")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="vstudio.broker.tasks"):
        assert await stop_task(task)
    assert "boom" in caplog.text


async def test_a_finished_task_returns_at_once() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    assert await stop_task(task)


async def test_a_slow_shutdown_names_the_tasks_it_waits_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from server.serve import _report_slow_shutdown

    waiting = asyncio.create_task(asyncio.sleep(5), name="hub-feed")
    with caplog.at_level(logging.WARNING, logger="vstudio.server.serve"):
        await _report_slow_shutdown(0.01)
    waiting.cancel()
    assert "shutdown still running" in caplog.text
    assert "hub-feed at " in caplog.text
