"""Lanes: a fixed pool of coroutines that run the handler with bounded concurrency.

Why lanes and not a task per message: creating and scheduling an ``asyncio.Task`` costs
several microseconds, as much as everything else per message together. A lane takes the
next entry and awaits the handler; a handler that does not suspend runs to completion
without a trip through the event loop, while one that awaits I/O lets the next lane run.
Lanes are woken one at a time (a woken lane wakes the next if work remains), so a burst
of fast messages costs one wake-up, not one per lane.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from redrive.core.codec import decode_body
from redrive.core.message import Message
from redrive.runtime import moves
from redrive.runtime.settings import AsyncHandler, SyncHandler

if TYPE_CHECKING:
    from redrive.runtime.consumer import Consumer


class Lanes:
    """The lanes of one consumer and their wake-up protocol."""

    def __init__(self, consumer: Consumer) -> None:
        self.c = consumer
        self.idle: list[asyncio.Future[None]] = []
        self.waking = False
        self.executor: ThreadPoolExecutor | None = None
        if not consumer.spec.is_async:
            self.executor = ThreadPoolExecutor(
                consumer.spec.concurrency, thread_name_prefix=f"redrive-{consumer.spec.stream}"
            )

    def wake(self) -> None:
        """Wake one idle lane unless one is already on its way."""
        if self.waking or not self.idle:
            return
        self.waking = True
        self.idle.pop().set_result(None)

    def wake_all(self) -> None:
        """Wake every idle lane (shutdown: they drain the queue and return)."""
        while self.idle:
            fut = self.idle.pop()
            if not fut.done():
                fut.set_result(None)

    async def lane(self) -> None:
        """Run queued entries until the consumer closes and the queue is empty."""
        c = self.c
        queue = c.queue
        loop = asyncio.get_running_loop()
        run = self._run_async if c.spec.is_async else self._run_sync
        try:
            while True:
                if not queue:
                    if c.closing:
                        return
                    fut = loop.create_future()
                    self.idle.append(fut)
                    await fut
                    self.waking = False
                    continue
                source, entry_id, fields = queue.popleft()
                if queue:
                    self.wake()
                c.inflight += 1
                try:
                    await run(source, entry_id, fields)
                finally:
                    c.inflight -= 1
                    source.held.pop(entry_id, None)
                    c.capacity.set()
        finally:
            if self.executor is not None and c.closing:
                self.executor.shutdown(wait=False)

    async def _run_async(self, source: Any, entry_id: bytes, fields: Any) -> None:
        c = self.c
        if fields is None:
            await moves.trimmed(c, source, entry_id)
            return
        msg: Message = source.message(entry_id, fields)
        started = time.perf_counter()
        try:
            msg.data = decode_body(fields, c.spec.max_payload_bytes)
            await cast(AsyncHandler, c.spec.fn)(msg)
        except Exception as exc:  # noqa: BLE001 - every handler failure becomes a decision
            await moves.failed(c, source, msg, exc, time.perf_counter() - started)
            return
        source.acks.append(entry_id)
        c.stats.succeeded += 1
        breaker = c.breaker
        if breaker is not None:
            breaker.record(False, started)
        c.ack_wanted.set()

    async def _run_sync(self, source: Any, entry_id: bytes, fields: Any) -> None:
        c = self.c
        if fields is None:
            await moves.trimmed(c, source, entry_id)
            return
        msg: Message = source.message(entry_id, fields)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            msg.data = decode_body(fields, c.spec.max_payload_bytes)
            await loop.run_in_executor(self.executor, cast(SyncHandler, c.spec.fn), msg)
        except Exception as exc:  # noqa: BLE001 - every handler failure becomes a decision
            await moves.failed(c, source, msg, exc, time.perf_counter() - started)
            return
        source.acks.append(entry_id)
        c.stats.succeeded += 1
        if c.breaker is not None:
            c.breaker.record(False, time.monotonic())
        c.ack_wanted.set()
