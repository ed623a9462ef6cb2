"""cancel_and_wait stops a background loop even when a cancellation is lost, as asyncio.wait_for can lose one."""

from __future__ import annotations

import asyncio
import logging

import pytest

from nexus_fast.tasks import cancel_and_wait, cancel_and_wait_all


async def _loop_that_loses_the_first_cancel(swallowed: list[int]) -> None:
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if not swallowed:  # what wait_for does on 3.11 when the inner awaitable finishes in the same turn
                swallowed.append(1)
                continue
            raise


async def test_a_lost_cancellation_is_repeated_until_the_task_ends() -> None:
    swallowed: list[int] = []
    task = asyncio.create_task(_loop_that_loses_the_first_cancel(swallowed))
    await asyncio.sleep(0.02)
    await asyncio.wait_for(cancel_and_wait(task, retry_interval=0.02), 2.0)
    assert swallowed == [1]
    assert task.cancelled()


async def test_a_plain_cancel_would_have_hung() -> None:
    swallowed: list[int] = []
    task = asyncio.create_task(_loop_that_loses_the_first_cancel(swallowed))
    await asyncio.sleep(0.02)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done  # the single cancel was lost: the loop still runs
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_finished_and_failed_tasks_are_reaped_and_failures_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def fail() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fail())
    finished = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.ERROR, logger="nexus_fast.tasks"):
        await cancel_and_wait_all([failed, finished])
        await cancel_and_wait(None)
    assert "boom" in caplog.text
    assert finished.done() and not finished.cancelled()
