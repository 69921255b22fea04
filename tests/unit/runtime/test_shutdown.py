"""Stopping tasks: a task that swallows its cancellation is cancelled again."""

from __future__ import annotations

import asyncio

from redrive.runtime.consumer import cancel


async def test_a_task_that_swallowed_its_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # carries on, as a loop inside a redis-py reply once did
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)

    await asyncio.wait_for(cancel([task]), 5)

    assert task.cancelled() and swallowed == 1
