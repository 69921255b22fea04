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
import inspect
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from redrive.core.breaker import BreakerState
from redrive.core.codec import check_size
from redrive.core.message import Message
from redrive.errors import ConfigError, HandlerTimeout
from redrive.runtime import moves
from redrive.runtime.background import drop_unstarted
from redrive.runtime.recovery import SHARED_RUNS
from redrive.runtime.settings import AsyncHandler, SyncHandler
from redrive.store.channel import TRANSPORT_ERRORS

if TYPE_CHECKING:
    from redrive.runtime.consumer import Consumer, Item
    from redrive.runtime.source import Source

log = logging.getLogger("redrive.dispatch")

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


class Run:
    """What one lane is running: when it started (0: nothing) and whether it expired."""

    __slots__ = ("expired", "started", "task")

    def __init__(self) -> None:
        self.started = 0.0
        self.expired = False
        self.task: asyncio.Task[None] | None = None


class Lanes:
    """The lanes of one consumer and their wake-up protocol."""

    def __init__(self, consumer: Consumer) -> None:
        self.c = consumer
        self.idle: list[asyncio.Future[None]] = []
        self.waking = False
        self.runs = [Run() for _ in range(consumer.spec.concurrency)]
        self.abandoned = 0  # threads of ``def`` handlers that outlived their time limit
        self.executor: ThreadPoolExecutor | None = None
        if not consumer.spec.is_async:
            self.executor = self._new_executor()
        self.fn = self.handler()

    def _new_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.c.spec.concurrency, thread_name_prefix="redrive-handler")

    def start(self) -> list[asyncio.Task[None]]:
        """Create one task per lane (the watchdog cancels a run through its task)."""
        spawn = asyncio.get_running_loop().create_task
        for i, run in enumerate(self.runs):
            run.task = spawn(self.lane(run), name=f"lane {i}")
        return [run.task for run in self.runs if run.task is not None]

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

    async def lane(self, run: Run) -> None:  # noqa: C901, PLR0912, PLR0915 - the hot path
        """Run queued entries until shutdown. One long frame on purpose: an extra coroutine
        call per message would cost about as much as the rest of the per-message work."""
        c = self.c
        queue = c.queue
        fn = self.fn
        max_bytes = c.spec.max_payload_bytes
        breaker = c.breaker
        timings = c.stats.timings  # None when metrics are off
        # Leases are renewed at a third of the visibility timeout; an entry that waited
        # longer than this was held through a stall (SIGSTOP, a frozen VM).
        confirm_after = c.spec.visibility_timeout * 0.6
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
                started = time.perf_counter()
                since = source.held.get(entry_id)
                if since is not None and started - since > confirm_after:
                    if not await self.still_ours(source, entry_id):
                        continue  # another consumer reclaimed it while we were stalled
                    started = time.perf_counter()
                msg: Message = source.message(entry_id, fields)
                if timings is not None and source.trusted:  # a retry: how late is it?
                    timings.late(msg.meta.get("due-ms"))
                run.started = started
                try:
                    check_size(fields, max_bytes)
                    await fn(msg)
                except Exception as exc:  # every failure becomes a decision
                    await self.failed(run, source, msg, exc, started)
                    continue
                except asyncio.CancelledError:
                    if not run.expired:
                        run.started = 0.0
                        raise  # shutdown
                    await self.failed(run, source, msg, None, started)
                    continue
                run.started = 0.0
                if run.expired:  # it swallowed the cancellation and returned
                    self.forgive(run)
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

    async def still_ours(self, source: Source, entry_id: bytes) -> bool:
        """Renew the lease of every long-waiting buffered entry of ``source``; drop the
        ones another consumer took meanwhile. Whether ``entry_id`` is still ours.

        After a stall past the visibility timeout, another consumer may have reclaimed and
        even finished the buffered entries; running them again would only repeat its work
        (the fence would reject the outcome, but the handler's effects would happen twice).
        """
        c = self.c
        cutoff = time.perf_counter() - c.spec.visibility_timeout / 3
        old = [eid for eid, since in source.held.items() if since < cutoff]
        if entry_id not in old:
            old.append(entry_id)
        try:
            lost = await c.scripts.renew(c.client, [source.key], [c.spec.group, c.name, *old])
        except TRANSPORT_ERRORS:
            return True  # cannot tell: run it, the fence still guards the outcome
        now = time.perf_counter()
        for eid in old:
            if eid in source.held:
                source.held[eid] = now
        if not lost:
            return True
        gone = set(lost)
        drop_unstarted(c, source, gone)
        log.warning(
            "%d buffered entries of %s were reclaimed by another consumer while this one "
            "was stalled: dropped, not run",
            len(gone), source.key,
        )  # fmt: skip
        return entry_id not in gone

    async def failed(
        self, run: Run, source: Source, msg: Message, exc: Exception | None, started: float
    ) -> None:
        """Settle a failed run; ``exc=None``: the watchdog cancelled it at its time limit."""
        run.started = 0.0
        if exc is None:
            exc = self.timed_out(run)
        elif run.expired:  # it swallowed the cancellation and failed otherwise
            self.forgive(run)
        await moves.failed(self.c, source, msg, exc, time.perf_counter() - started)

    def timed_out(self, run: Run) -> HandlerTimeout:
        """The run the watchdog cancelled: un-cancel the lane and name the failure.

        A ``def`` handler's thread cannot be stopped: it is abandoned (it finishes, or not,
        on its own) and the lanes continue on a fresh thread pool, so a hung call never
        takes a lane for good. Each abandoned thread is counted and logged.
        """
        self.forgive(run)
        limit = self.c.spec.timeout
        if self.executor is not None:
            old, self.executor = self.executor, self._new_executor()
            old.shutdown(wait=False)  # its other threads finish their runs, then exit
            self.abandoned += 1
            log.warning(
                "a def handler of %s ran past its %.1fs time limit: its thread cannot be "
                "stopped and is abandoned (%d so far); the lanes go on with a new thread pool",
                self.c.main.key, limit, self.abandoned,
            )  # fmt: skip
        return HandlerTimeout(f"the handler ran past its time limit of {limit:g}s")

    def forgive(self, run: Run) -> None:
        """A cancelled run ended without the cancellation: undo it (the next run starts
        with a clean slate and a watchdog that watches it)."""
        run.expired = False
        if run.task is not None:
            run.task.uncancel()

    def expire_hung(self, now: float) -> int:
        """Cancel every run older than the handler's time limit (the watchdog's tick)."""
        limit = self.c.spec.timeout
        if limit is None:
            return 0
        hung = 0
        for run in self.runs:
            if run.started and not run.expired and now - run.started > limit:
                run.expired = True
                hung += 1
                if run.task is not None:
                    run.task.cancel()
        return hung

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
        always sees an async callable); an ``async def`` one is called directly. Built
        once, when the consumer is made: a middleware that returns no callable is a
        start-up error, not a failure of every message.
        """
        spec = self.c.spec
        fn: AsyncHandler = self._call_sync
        if spec.is_async:
            fn = spec.fn if inspect.iscoroutinefunction(spec.fn) else self._call_awaitable
        for wrap in reversed(self.c.middleware):
            wrapped = wrap(spec, fn)
            if not callable(wrapped):
                name = getattr(wrap, "__qualname__", repr(wrap))
                raise ConfigError(
                    f"middleware {name} returned {wrapped!r} instead of a callable: "
                    "end it with `return call` (the wrapper it built around call_next)"
                )
            fn = wrapped
        return fn

    async def _call_awaitable(self, msg: Message) -> Any:
        # An object with ``async def __call__`` or a decorated coroutine function.
        result = self.c.spec.fn(msg)
        return await result if inspect.isawaitable(result) else result

    async def _call_sync(self, msg: Message) -> Any:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.executor, cast(SyncHandler, self.c.spec.fn), msg)
        if inspect.isawaitable(result):
            # A ``def`` that returned a coroutine (say, a plain decorator around an async
            # handler): run it here; dropping it would ack a run that never happened.
            result = await result
        return result


__all__ = ["Item", "Lanes", "Run"]
