"""Stopping background tasks for certain.

A plain ``task.cancel(); await task`` can wait forever on Python 3.11: ``asyncio.wait_for`` swallows a cancellation
that arrives in the same loop turn as its inner awaitable completes (CPython gh-86296, fixed in 3.12), so a
background loop that polls through ``wait_for`` (health checks, the replica monitor, pool maintenance) may carry on
as if it was never cancelled, and whoever awaits it (plane close, worker drain) hangs. ``cancel_and_wait`` cancels
again until the task has really finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("nexus_fast.tasks")


async def cancel_and_wait(task: asyncio.Future | None, retry_interval: float = 0.1) -> None:
    """Cancel ``task`` and return once it is done; an exception it ended with is logged, not raised."""
    if task is None:
        return
    await cancel_and_wait_all((task,), retry_interval)


async def cancel_and_wait_all(tasks: Iterable[asyncio.Future], retry_interval: float = 0.1) -> None:
    """``cancel_and_wait`` for several tasks at once."""
    tasks = list(tasks)  # walked twice below: a generator would be empty the second time
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=retry_interval)
    for task in tasks:
        if task.done() and not task.cancelled():
            exc = task.exception()
            if exc is not None:
                log.error("background task %r ended with %r", task, exc)
