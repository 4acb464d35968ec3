"""Stopping a background task in bounded time, even when a library absorbs its cancel.

redis-py can swallow a cancel that lands inside a command (Python 3.11), and a loop that
never looks at ``Task.cancelling()`` then runs on: one ``cancel()`` and an unbounded
``await task`` would hang a server's shutdown until its supervisor kills it. So the cancel is
repeated, the wait is bounded, and a task that still runs is named in the log and left behind.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["stop_task"]

log = logging.getLogger("vstudio.broker.tasks")


async def stop_task(task: asyncio.Task[Any], *, timeout: float = 5.0, every: float = 0.25) -> bool:
    """Cancel ``task`` (again every ``every`` seconds) until it ends or ``timeout`` passes.

    True when it ended. An error it ended with is logged, not raised: the caller is stopping.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("task %s did not stop within %.1f s; left behind", task.get_name(), timeout)
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(every, remaining))
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("task %s ended with an error", task.get_name(), exc_info=error)
    return True
