"""Lanes: a fixed pool of coroutines that run the handler with bounded concurrency.

Why lanes and not a task per message: creating and scheduling an ``asyncio.Task`` costs
several microseconds, as much as everything else per message together. A lane takes the
next entry and awaits the handler; a handler that does not suspend runs to completion
without a trip through the event loop, while one that awaits I/O lets the next lane run.
Lanes are woken one at a time (a woken lane wakes the next if work remains), so a burst
of fast messages costs one wake-up, not one per lane. A lane that ran many handlers
without suspending yields once, so the reader can fetch the next batch while the rest
of this one is handled (client and server then work in parallel).

Lanes take from the buffer and hand every outcome on: a success to the ack batcher, a
failure to the settler. They never touch Redis for an outcome themselves.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from redrive.core.breaker import BreakerState, CircuitBreaker
from redrive.core.codec import check_size
from redrive.core.fields import DUE_MS
from redrive.core.message import Message
from redrive.errors import ConfigError, HandlerTimeout
from redrive.runtime import idempotency
from redrive.runtime.acks import AckBatcher
from redrive.runtime.buffer import Buffer, Item
from redrive.runtime.idempotency import Claims
from redrive.runtime.isolation import Isolation
from redrive.runtime.leases import Leases
from redrive.runtime.moves import Settler
from redrive.runtime.outcomes import PARKED, RAN, Outcomes
from redrive.runtime.settings import AsyncHandler, HandlerSpec, Middleware, SyncHandler
from redrive.runtime.source import Source
from redrive.runtime.stats import Stats
from redrive.runtime.supervise import keep_running

if TYPE_CHECKING:
    from redrive.runtime.tracing import ConsumerTracing

log = logging.getLogger("redrive.dispatch")

YIELD_EVERY = 32
#: Returned by :meth:`Lanes.next_slow` when a lane should end.
STOP = cast("Item", ("stop",))


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
    """The lanes of one consumer: they run the handler on what the buffer holds."""

    def __init__(
        self,
        *,
        spec: HandlerSpec,
        middleware: Sequence[Middleware],
        buffer: Buffer,
        batcher: AckBatcher,
        settler: Settler,
        isolation: Isolation,
        leases: Leases,
        breaker: CircuitBreaker | None,
        stats: Stats,
        claims: Claims | None = None,
        tracing: ConsumerTracing | None = None,
    ) -> None:
        self.spec = spec
        self.claims = claims
        self.middleware = tuple(middleware)
        self.buffer = buffer
        self.batcher = batcher
        self.settler = settler
        self.isolation = isolation
        self.leases = leases
        self.breaker = breaker
        self.stats = stats
        self.tracing = tracing  # None: tracing is off, the handler runs unwrapped
        self.runs = [Run() for _ in range(spec.concurrency)]
        self.abandoned = 0  # threads of ``def`` handlers that outlived their time limit
        self.executor: ThreadPoolExecutor | None = None
        if not spec.is_async:
            self.executor = self._new_executor()
        self.fn, self.plain = self.handler()
        self.outcomes = Outcomes(spec=spec, buffer=buffer, batcher=batcher, settler=settler,
                                 stats=stats, claims=claims)  # fmt: skip

    def _new_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.spec.concurrency, thread_name_prefix="redrive-handler")

    def start(self) -> list[asyncio.Task[None]]:
        """Create one task per lane (the watchdog cancels a run through its task)."""
        spawn = asyncio.get_running_loop().create_task
        stream = self.spec.stream
        for i, run in enumerate(self.runs):
            lane = functools.partial(self.lane, run)
            run.task = spawn(
                keep_running(lane, what=f"lane {i}", stream=stream), name=f"lane {i} {stream}"
            )
        return [run.task for run in self.runs if run.task is not None]

    async def lane(self, run: Run) -> None:  # noqa: C901, PLR0912, PLR0915 - the hot path
        """Run buffered entries until shutdown. One long frame on purpose: an extra
        coroutine call per message would cost about as much as the rest of its work."""
        buffer = self.buffer
        queue = buffer.queue
        suspects = buffer.suspects
        isolation = self.isolation
        batcher = self.batcher
        fn, plain = self.fn, self.plain
        fresh = buffer.fresh  # new entries whose idempotency claim is implicit (or None)
        max_bytes = self.spec.max_payload_bytes
        breaker = self.breaker
        stats = self.stats
        timings = stats.timings  # None when metrics are off
        # Leases are renewed at a third of the visibility timeout; an entry that waited
        # longer than this was held through a stall (SIGSTOP, a frozen VM).
        confirm_after = self.spec.visibility_timeout * 0.6
        streak = 0
        parked = False  # the entry just run waits for another run's claim: keep it held
        while True:
            if (
                queue
                and streak < YIELD_EVERY
                and not (suspects or isolation.busy)
                and (breaker is None or breaker.state is BreakerState.CLOSED)
            ):
                item = queue.popleft()
                source, entry_id, fields, size = item
                if queue:
                    buffer.wake()
                streak += 1
            else:
                slow = await self.next_slow()
                streak = 0
                if slow is None:
                    continue
                if slow is STOP:
                    return
                item = slow
                source, entry_id, fields, size = item
            buffer.begin()
            try:
                if fields is None:
                    self.settler.trimmed(source, entry_id)
                    continue
                # Keyed on its own id and new: no claim to ask for (``Claims.implicit``).
                own_key = False
                if fresh is not None and not source.trusted and entry_id in fresh:
                    fresh.discard(entry_id)
                    own_key = True
                started = time.perf_counter()
                since = buffer.held[source].get(entry_id)
                if since is not None and started - since > confirm_after:
                    lost = await self.leases.renew(source, also=entry_id)
                    if lost and entry_id in lost:
                        continue  # another consumer reclaimed it while we were stalled
                    started = time.perf_counter()
                msg: Message = source.message(entry_id, fields)
                if timings is not None and source.trusted:  # a retry: how late is it?
                    timings.late(msg.meta.get(DUE_MS.meta))
                run.started = started
                try:
                    if size > max_bytes:  # the body is within the cap when the entry is
                        check_size(fields, max_bytes)
                    result = await (plain if own_key else fn)(msg)
                except Exception as exc:  # every failure becomes a decision
                    self.failed(run, source, msg, exc, started)
                    continue
                except asyncio.CancelledError:
                    if not run.expired:
                        run.started = 0.0
                        raise  # shutdown
                    self.failed(run, source, msg, None, started)
                    continue
                run.started = 0.0
                if run.expired:  # it swallowed the cancellation and returned
                    self.forgive(run)
                if result is None and not own_key:
                    batcher.ack(source, entry_id)
                elif (settled := self.outcomes.settle(item, msg, result, own_key)) != RAN:
                    parked = settled == PARKED
                    continue  # not a run that succeeded: a duplicate, or parked
                if timings is not None:
                    timings.success(started, msg.id)
                stats.succeeded += 1
                if breaker is not None:
                    breaker.success(not source.trusted)
            finally:
                if parked:
                    parked = False
                else:
                    buffer.finish(source, entry_id, size)
                if entry_id is isolation.entry:
                    await isolation.done(source, entry_id)

    def failed(
        self, run: Run, source: Source, msg: Message, exc: Exception | None, started: float
    ) -> None:
        """Settle a failed run; ``exc=None``: the watchdog cancelled it at its time limit."""
        run.started = 0.0
        if exc is None:
            exc = self.timed_out(run)
        elif run.expired:  # it swallowed the cancellation and failed otherwise
            self.forgive(run)
        self.settler.failed(source, msg, exc, time.perf_counter() - started)

    def timed_out(self, run: Run) -> HandlerTimeout:
        """The run the watchdog cancelled: un-cancel the lane and name the failure.

        A ``def`` handler's thread cannot be stopped: it is abandoned (it finishes, or not,
        on its own) and the lanes continue on a fresh thread pool, so a hung call never
        takes a lane for good. Each abandoned thread is counted and logged.
        """
        self.forgive(run)
        limit = self.spec.timeout
        if self.executor is not None:
            old, self.executor = self.executor, self._new_executor()
            old.shutdown(wait=False)  # its other threads finish their runs, then exit
            self.abandoned += 1
            log.warning(
                "a def handler of %s ran past its %.1fs time limit: its thread cannot be "
                "stopped and is abandoned (%d so far); the lanes go on with a new thread pool",
                self.spec.stream, limit, self.abandoned,
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
        limit = self.spec.timeout
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
        buffer = self.buffer
        if buffer.suspects or self.isolation.busy:
            return STOP if buffer.sealed else await self.isolation.next()
        breaker = self.breaker
        if breaker is not None and breaker.state is BreakerState.CLOSED:
            breaker = None  # only an open or half-open breaker matters here
        queue = buffer.queue
        waiting = not queue or (breaker is not None and not breaker.allowance(time.monotonic()))
        if waiting:
            if buffer.sealed:
                return STOP  # anything buffered stays pending for the next worker
            if breaker is not None:  # open: wait instead of burning retries
                await asyncio.sleep(min(0.05, breaker.wait(time.monotonic()) or 0.05))
            else:
                await buffer.idle_wait()
            return None
        if breaker is not None:  # half-open: this entry is a probe
            breaker.take_probe()
            item = take_fresh(queue)
            if queue:
                buffer.wake()
            return item
        buffer.make_room()  # a long streak: let the reader fetch the next batch meanwhile
        await asyncio.sleep(0)
        return None

    def close(self) -> None:
        """Release the thread pool of a ``def`` handler (after the lanes have finished)."""
        if self.executor is not None:
            self.executor.shutdown(wait=False)

    def handler(self) -> tuple[AsyncHandler, AsyncHandler]:
        """The handler as one async callable, with the app's middleware applied; and the
        same without the idempotency claim, for the runs whose claim is implicit.

        A ``def`` handler is wrapped to run in the thread pool (innermost, so middleware
        always sees an async callable); an ``async def`` one is called directly. Built
        once, when the consumer is made: a middleware that returns no callable is a
        start-up error, not a failure of every message.
        """
        spec = self.spec
        fn: AsyncHandler = self._call_sync
        if spec.is_async:
            fn = spec.fn if inspect.iscoroutinefunction(spec.fn) else self._call_awaitable
        for wrap in reversed(self.middleware):
            wrapped = wrap(spec, fn)
            if not callable(wrapped):
                name = getattr(wrap, "__qualname__", repr(wrap))
                raise ConfigError(
                    f"middleware {name} returned {wrapped!r} instead of a callable: "
                    "end it with `return call` (the wrapper it built around call_next)"
                )
            fn = wrapped
        plain = fn
        if spec.idempotency is not None and self.claims is not None:  # outermost: a
            # duplicate or a key claimed elsewhere skips the middleware too
            fn = idempotency.wrap(spec, spec.idempotency, self.claims, fn)
        if self.tracing is not None:  # around all: a run (a skipped duplicate too) is a span
            fn, plain = self.tracing.wrap(fn), self.tracing.wrap(plain)
        return fn, plain

    async def _call_awaitable(self, msg: Message) -> Any:
        # An object with ``async def __call__`` or a decorated coroutine function.
        result = self.spec.fn(msg)
        return await result if inspect.isawaitable(result) else result

    async def _call_sync(self, msg: Message) -> Any:
        loop = asyncio.get_running_loop()
        # In a copy of this context, so contextvars set by middleware reach the handler.
        run = contextvars.copy_context().run
        fn = cast(SyncHandler, self.spec.fn)
        result = await loop.run_in_executor(self.executor, run, fn, msg)
        if inspect.isawaitable(result):
            # A ``def`` that returned a coroutine (say, a plain decorator around an async
            # handler): run it here; dropping it would ack a run that never happened.
            result = await result
        return result


__all__ = ["STOP", "Lanes", "Run", "take_fresh"]
