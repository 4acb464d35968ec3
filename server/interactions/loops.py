"""How the interactions' background loops (poll auto-end, reaction windows) wait and stop."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["pause", "stop_loop"]


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep, waking early when ``stopping`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def stop_loop(task: asyncio.Task[None], timeout: float = 5.0) -> None:
    """Wait for a loop told to stop; cancel it if it does not within ``timeout``.

    Loops are stopped by a flag rather than by cancellation, because a cancellation that
    lands inside a Redis call can be absorbed by the client and leave the loop running.
    """
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
