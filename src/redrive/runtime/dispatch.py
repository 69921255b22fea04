"""Lanes: a fixed pool of coroutines that run the handler with bounded concurrency.

Why lanes and not a task per message: creating and scheduling an ``asyncio.Task`` costs
several microseconds, as much as everything else per message together. A lane takes the
next entry and awaits the handler; a handler that does not suspend runs to completion
without a trip through the event loop, while one that awaits I/O lets the next lane run.
Lanes are woken one at a time (a woken lane wakes the next if work remains), so a burst
of fast messages costs one wake-up, not one per lane. A lane that ran many handlers
without suspending yields once, so the reader can fetch the next batch while the rest
of this one is handled (client and server then work in parallel).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from redrive.core.breaker import BreakerState
from redrive.core.codec import check_size
from redrive.core.message import Message
from redrive.runtime import moves
from redrive.runtime.recovery import SHARED_RUNS
from redrive.runtime.settings import AsyncHandler, SyncHandler
from redrive.store.channel import TRANSPORT_ERRORS

if TYPE_CHECKING:
    from redrive.runtime.consumer import Consumer, Item
    from redrive.runtime.source import Source

YIELD_EVERY = 32
#: Returned by :meth:`Lanes.next_slow` when a lane should end.
STOP = cast("Item", ("stop",))
ISOLATION_POLL = 0.005
STARTS_TTL = 7 * 24 * 3600


def take_fresh(queue: deque[Item]) -> Item:
    """Remove and return the first entry of the source stream, else the head.

    Probes come from fresh messages: the buffer's head is often retries, a selection of
    messages that already failed, which would make every probe fail for a failing subset.
    """
    for i, item in enumerate(queue):
        if not item[0].trusted:
            del queue[i]
            return item
    return queue.popleft()


class Lanes:
    """The lanes of one consumer and their wake-up protocol."""

    def __init__(self, consumer: Consumer) -> None:
        self.c = consumer
        self.idle: list[asyncio.Future[None]] = []
        self.waking = False
        self.executor: ThreadPoolExecutor | None = None
        if not consumer.spec.is_async:
            self.executor = ThreadPoolExecutor(
                consumer.spec.concurrency, thread_name_prefix="redrive-handler"
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

    async def idle_wait(self) -> None:
        """Park this lane until there is work (or shutdown)."""
        fut = asyncio.get_running_loop().create_future()
        self.idle.append(fut)
        await fut
        self.waking = False

    async def lane(self) -> None:  # noqa: C901, PLR0912, PLR0915 - the hot path, see below
        """Run queued entries until shutdown. One long frame on purpose: an extra coroutine
        call per message would cost about as much as the rest of the per-message work."""
        c = self.c
        queue = c.queue
        fn = self.handler()
        max_bytes = c.spec.max_payload_bytes
        breaker = c.breaker
        timings = c.stats.timings  # None when metrics are off
        streak = 0
        while True:
            if (
                queue
                and streak < YIELD_EVERY
                and not (c.suspects or c.suspect_busy)
                and (breaker is None or breaker.state is BreakerState.CLOSED)
            ):
                source, entry_id, fields = queue.popleft()
                if queue:
                    self.wake()
                streak += 1
            else:
                item = await self.next_slow()
                streak = 0
                if item is None:
                    continue
                if item is STOP:
                    return
                source, entry_id, fields = item
            c.inflight += 1
            try:
                if fields is None:
                    await moves.trimmed(c, source, entry_id)
                    continue
                msg: Message = source.message(entry_id, fields)
                if timings is not None and source.trusted:  # a retry: how late is it?
                    timings.late(msg.meta.get("due-ms"))
                started = time.perf_counter()
                try:
                    check_size(fields, max_bytes)
                    await fn(msg)
                except Exception as exc:  # every failure becomes a decision
                    await moves.failed(c, source, msg, exc, time.perf_counter() - started)
                    continue
                if timings is not None:
                    timings.success(started, msg.id)
                source.acks.append(entry_id)
                c.stats.succeeded += 1
                if breaker is not None:
                    breaker.success(not source.trusted)
                if not c.ack_signalled:
                    c.ack_signalled = True
                    c.ack_wanted.set()
            finally:
                c.inflight -= 1
                source.held.pop(entry_id, None)
                if c.reader_waiting:
                    c.capacity.set()
                if entry_id is c.suspect_entry:
                    await self.suspect_done(source, entry_id)

    async def next_slow(self) -> Item | None:
        """The next entry when the fast path cannot take one; ``None`` = look again.

        Covers, in order: crash-loop suspects (isolated), an empty queue (park until
        woken), an open breaker (buffered entries wait, with their lease renewed, instead
        of burning retries; half-open lets a probe through), and a long streak of handlers
        that never suspended (yield once so the reader can fetch ahead).
        Returns :data:`STOP` when the lane should end (shutdown).
        """
        c = self.c
        if c.suspects or c.suspect_busy:
            return STOP if c.draining else await self.next_suspect()
        breaker = c.breaker
        if breaker is not None and breaker.state is BreakerState.CLOSED:
            breaker = None  # only an open or half-open breaker matters here
        waiting = not c.queue or (breaker is not None and not breaker.allowance(time.monotonic()))
        if waiting:
            if c.draining:
                return STOP  # anything buffered stays pending for the next worker
            if breaker is not None:  # open: wait instead of burning retries
                await asyncio.sleep(min(0.05, breaker.wait(time.monotonic()) or 0.05))
            else:
                await self.idle_wait()
            return None
        if breaker is not None:  # half-open: this entry is a probe
            breaker.take_probe()
            item = take_fresh(c.queue)
            if c.queue:
                self.wake()
            return item
        c.capacity.set()  # a long streak: let the reader fetch the next batch meanwhile
        await asyncio.sleep(0)
        return None

    async def next_suspect(self) -> Item | None:
        """Take the next suspect once nothing else is in flight, or ``None`` to look again.

        A suspect runs alone, so if it kills the worker, no other entry's run is blamed.
        Its run is counted first (HINCRBY, which survives the crash); at the limit it is
        dead-lettered instead of run.
        """
        c = self.c
        if c.suspect_busy or c.inflight:
            await asyncio.sleep(ISOLATION_POLL)
            return None
        source, entry_id, fields = item = c.suspects.popleft()
        # Claim isolation before the first await, or another lane could start a suspect too.
        c.suspect_busy = True
        c.suspect_entry = entry_id
        try:
            runs = await self._count_start(source, entry_id)
        except TRANSPORT_ERRORS:
            c.suspects.appendleft(item)
            c.suspect_busy = False
            c.suspect_entry = None
            await asyncio.sleep(ISOLATION_POLL * 10)
            return None
        # Runs before this one: the shared (uncounted) ones plus the isolated ones counted.
        if SHARED_RUNS + runs - 1 >= c.spec.max_deliveries and fields is not None:
            source.held.pop(entry_id, None)
            await moves.exceeded(c, source, entry_id, fields, runs)
            await self.suspect_done(source, entry_id)
            return None
        return item

    async def _count_start(self, source: Source, entry_id: bytes) -> int:
        pipe = self.c.client.pipeline(transaction=False)
        pipe.hincrby(self.c.keys.starts, source.tag + entry_id, 1)
        pipe.expire(self.c.keys.starts, STARTS_TTL)
        runs, _ = await pipe.execute()
        return int(runs)

    async def suspect_done(self, source: Source, entry_id: bytes) -> None:
        """A suspect settled (or was dead-lettered): forget its runs, let the next go."""
        c = self.c
        c.suspect_busy = False
        c.suspect_entry = None
        # On failure the hash simply expires; a stale count matters only if it crashes again.
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await c.client.hdel(c.keys.starts, source.tag + entry_id)
        self.wake()

    def close(self) -> None:
        """Release the thread pool of a ``def`` handler (after the lanes have finished)."""
        if self.executor is not None:
            self.executor.shutdown(wait=False)

    def handler(self) -> AsyncHandler:
        """The handler as one async callable, with the app's middleware applied.

        A ``def`` handler is wrapped to run in the thread pool (innermost, so middleware
        always sees an async callable); an ``async def`` one is called directly.
        """
        spec = self.c.spec
        fn = cast(AsyncHandler, spec.fn) if spec.is_async else self._call_sync
        for wrap in reversed(self.c.middleware):
            fn = wrap(spec, fn)
        return fn

    async def _call_sync(self, msg: Message) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, cast(SyncHandler, self.c.spec.fn), msg)


__all__ = ["Item", "Lanes"]
