"""The retry scheduler: moves due retries from the schedule to the retry stream.

Every worker runs one per handler; ``promote_due.lua`` is atomic, so many schedulers never
double a retry. It sleeps until the next retry it knows of is due, capped by
``scheduler_interval`` because another worker may schedule one due sooner; a retry this
worker schedules wakes it early only when it is due before that wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from redis.asyncio import Redis

from redrive.store import calls
from redrive.store.channel import TRANSPORT_ERRORS

PROMOTE_BATCH = 100


async def pause(event: asyncio.Event, seconds: float) -> None:
    """Sleep up to ``seconds``, waking early when ``event`` is set."""
    if seconds <= 0:
        return
    # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives as
    # the event fires, and the loop would then outlive its consumer.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


class Scheduler:
    """Promotes due members of ``due_key`` to ``retry_key`` in batches."""

    def __init__(self, *, client: Redis, due_key: str, retry_key: str, interval: float) -> None:
        self.client = client
        self.due_key = due_key
        self.retry_key = retry_key
        self.interval = interval
        self.wakes_at_ms = 0.0  # when the sleeping loop wakes next (0: awake)
        self._changed = asyncio.Event()

    def scheduled(self, due_ms: int) -> None:
        """A retry now waits until ``due_ms``: wake the loop if it would sleep past it."""
        if not self.wakes_at_ms or due_ms < self.wakes_at_ms:
            self._changed.set()

    async def loop(self) -> None:
        """Promote what is due, then sleep until the next one (or the interval)."""
        interval = self.interval
        while True:
            self._changed.clear()
            now_ms = int(time.time() * 1000)
            call = calls.promote_due(
                due=self.due_key, retry=self.retry_key, now_ms=now_ms, limit=PROMOTE_BATCH
            )
            try:
                promoted = await call(self.client)
            except TRANSPORT_ERRORS:
                await asyncio.sleep(interval)
                continue
            if promoted.moved >= PROMOTE_BATCH:
                continue
            wait = interval
            if promoted.next_ms is not None:
                wait = min(interval, max(0.0, (promoted.next_ms - time.time() * 1000) / 1000))
            self.wakes_at_ms = time.time() * 1000 + wait * 1000
            await pause(self._changed, wait)
            self.wakes_at_ms = 0.0
