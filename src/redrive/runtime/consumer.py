"""The consumer of one handler: the composition root of the runtime's parts.

Life cycle (docs/concepts.md, "The consumer loop"): create the groups, re-read this
consumer's own pending entries, then loop: the reader fills the buffer (XREADGROUP, with
the pending acks and moves in the same round trip) → the lanes run the handler →
successes go to the ack batcher, failures to the settler, which queues one fenced move
each with the batcher. Named background tasks promote due retries, reclaim entries of
crashed consumers, renew leases of long handlers, flush settlements the reader did not
take, publish counters, watch handler time limits and apply the DLQ retention.
``docs/architecture.md`` shows who owns which state.

Every part is built here and given its collaborators; nothing reaches into the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from redis.asyncio import Redis

from redrive.core.breaker import BreakerState, CircuitBreaker, Transition
from redrive.runtime import background
from redrive.runtime.acks import AckBatcher
from redrive.runtime.buffer import Buffer, ReadBudget
from redrive.runtime.dispatch import Lanes
from redrive.runtime.groups import Groups
from redrive.runtime.idempotency import Claims
from redrive.runtime.isolation import Isolation
from redrive.runtime.leases import Leases
from redrive.runtime.moves import Settler
from redrive.runtime.pace import IdleIntervals
from redrive.runtime.reader import Reader
from redrive.runtime.recovery import Recovery
from redrive.runtime.scheduler import Scheduler
from redrive.runtime.settings import HandlerSpec, Middleware, WorkerOptions
from redrive.runtime.source import Source
from redrive.runtime.stats import Stats
from redrive.runtime.supervise import keep_running
from redrive.store import calls
from redrive.store.channel import TRANSPORT_ERRORS, Channel
from redrive.store.keys import STREAMS_INDEX, StreamKeys, idempotency_claims, idempotency_done
from redrive.store.scripts import scripts

log = logging.getLogger("redrive.consumer")

CANCEL_TRIES = 10
CANCEL_GRACE = 0.5


def _raw(response: Any, **options: Any) -> Any:
    return response


def use_raw_replies(client: Redis) -> None:
    """Skip redis-py's reply parsing for the stream commands on the hot path."""
    for command in ("XREADGROUP", "XAUTOCLAIM"):
        client.set_response_callback(command, _raw)


async def cancel(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they end.

    A cancellation can be swallowed (redis-py may absorb one that lands mid-reply, and a
    handler may catch it): such a task is cancelled again, so shutdown never hangs on a
    loop that carried on. One still running after that is left behind, with a warning.
    """
    pending = {t for t in tasks if not t.done()}
    for _ in range(CANCEL_TRIES):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_GRACE)
    for task in pending:
        log.warning("task %s did not stop when cancelled; left behind", task.get_name())


class Consumer:
    """Runs one handler spec as one named consumer of its group."""

    def __init__(
        self,
        spec: HandlerSpec,
        opts: WorkerOptions,
        client: Redis,
        reader: Redis,
        middleware: Sequence[Middleware] = (),
        scheduler: Scheduler | None = None,
        handlers: int = 1,
        budget: ReadBudget | None = None,
        tracer: Any = None,
    ) -> None:
        """``tracer``: an OpenTelemetry tracer that records (``runtime.tracing.tracer_for``),
        or ``None``: tracing off, no span code on any path."""
        use_raw_replies(reader)
        use_raw_replies(client)
        self.spec = spec
        self.opts = opts
        self.client = client
        self.name = name = opts.consumer
        self.keys = keys = StreamKeys.of(spec.stream, spec.group)
        self.scripts = scripts()
        main = Source(keys.stream, spec.stream, trusted=False)
        retry = Source(keys.retry, spec.stream, trusted=True)
        self.sources = sources = (main, retry)
        rng = random.Random()
        self.breaker = breaker = (
            CircuitBreaker(spec.breaker, self.breaker_moved) if spec.breaker else None
        )
        self.stats = stats = Stats(spec.stream, spec.group, name, metrics=opts.metrics)
        #: ``handlers``: how many consumers this process runs; their idle work is spread.
        self.idle = IdleIntervals.of(opts, spec, handlers)
        stats.breaker = breaker
        # Cluster: each channel is pinned to the slot of S (and so of all its keys).
        self.read_channel = Channel(reader, keys.stream, track_id=True)
        self.ack_channel = Channel(client, keys.stream)
        # The worker's read-ahead budget is shared by its handlers; alone, one of its own.
        self.buffer = buffer = Buffer(sources, budget or ReadBudget(opts.read_ahead_bytes))
        self.groups = groups = Groups(
            client=client, group=spec.group, start_id=spec.start_id, main=main, retry=retry,
            stats=stats, buffer=buffer,
        )  # fmt: skip
        idem = spec.idempotency
        self.batcher = batcher = AckBatcher(
            client=client, channel=self.ack_channel, group=spec.group,
            consumer=name, sources=sources, stats=stats, linger=opts.ack_linger,
            on_error_reply=groups.on_error_reply,
            done_ttl_ms=idem.ttl_ms() if idem is not None else None,
            idempotency_keys=(idempotency_done(spec.stream, spec.group),
                              idempotency_claims(spec.stream, spec.group)),
        )  # fmt: skip
        # Idempotent handlers claim their keys on a channel of their own (same slot).
        self.claims_channel = Channel(client, keys.stream) if idem is not None else None
        claims = None
        if idem is not None and self.claims_channel is not None:
            claims = Claims(channel=self.claims_channel, spec=spec, idem=idem, consumer=name)
            if claims.implicit:
                buffer.fresh = set()
        # The worker's scheduler serves every handler of the process, and the worker loads
        # the scripts once; a consumer run alone (no worker) does both itself.
        self.alone = scheduler is None
        self.scheduler = scheduler or Scheduler(interval=opts.scheduler_interval)
        self.schedule = self.scheduler.add(
            client=client, due_key=keys.due, retry_key=keys.retry, stream=spec.stream
        )
        tracing = None
        if tracer is not None:
            from redrive.runtime.tracing import ConsumerTracing

            tracing = ConsumerTracing(
                tracer, stream=spec.stream, group=spec.group, consumer=name,
                child_of_producer=opts.trace_child_of_producer,
            )  # fmt: skip
        self.settler = settler = Settler(
            spec=spec, consumer=name, keys=keys, batcher=batcher, stats=stats,
            breaker=breaker, client=client, rng=rng, on_scheduled=self.schedule.scheduled,
            tracing=tracing,
        )  # fmt: skip
        self.recovery = recovery = Recovery(
            client=client, spec=spec, consumer=name, sources=sources, buffer=buffer,
            batcher=batcher, settler=settler, stats=stats, tracing=tracing,
        )  # fmt: skip
        self.leases = leases = Leases(
            client=client, group=spec.group, consumer=name, buffer=buffer,
            visibility_timeout=spec.visibility_timeout,
        )  # fmt: skip
        isolation = Isolation(
            client=client, starts_key=keys.starts, buffer=buffer, settler=settler,
            max_deliveries=spec.max_deliveries,
        )  # fmt: skip
        self.lanes = Lanes(
            spec=spec, middleware=middleware, buffer=buffer, batcher=batcher, settler=settler,
            isolation=isolation, leases=leases, breaker=breaker, stats=stats, claims=claims,
            tracing=tracing,
        )  # fmt: skip
        self.reader = Reader(
            spec=spec, consumer=name, block_ms=self.idle.block_ms, main=main, retry=retry,
            channel=self.read_channel, buffer=buffer, batcher=batcher, recovery=recovery,
            groups=groups, breaker=breaker, stats=stats, claims=claims,
        )  # fmt: skip
        self.rng = rng
        self.reader_task: asyncio.Task[None] | None = None
        self.lane_tasks: list[asyncio.Task[None]] = []
        self.background: dict[str, asyncio.Task[None]] = {}

    def breaker_moved(self, t: Transition) -> None:
        """Log every change of the breaker at WARNING (a pause must be visible) and count it."""
        extra = {"stream": self.keys.stream, "group": self.spec.group, "breaker": t.after.value}
        if t.after is BreakerState.OPEN:
            self.stats.breaker_opened += 1
            what = "transient failures" if t.cause == "dependency" else "handler failures"
            if t.before is BreakerState.HALF_OPEN:
                why = f"{t.failures} probes failed ({what})"
            else:
                why = f"{what} in {t.failures} of the last {t.calls} fresh messages ({t.ratio:.0%})"
            hint = "" if t.cause == "dependency" else "; a bad deploy? fix the handler"
            log.warning(
                "breaker of %s (%s) opened: %s; reading paused for %.1fs%s",
                self.keys.stream, self.spec.group, why, self.spec.breaker.open_seconds,  # type: ignore[union-attr]
                hint, extra=extra,
            )  # fmt: skip
        elif t.after is BreakerState.HALF_OPEN:
            log.warning("breaker of %s (%s) half-open: probing", self.keys.stream, self.spec.group,
                        extra=extra)  # fmt: skip
        else:
            self.stats.breaker_closed += 1
            log.warning("breaker of %s (%s) closed: a probe succeeded, reading resumed",
                        self.keys.stream, self.spec.group, extra=extra)  # fmt: skip

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load scripts (a worker did it for all), create the groups and register the
        stream in the index."""
        if self.alone:
            await self.scripts.load_all(self.client)
        await self.groups.start()
        await self.client.sadd(STREAMS_INDEX, self.spec.stream)

    def _loops(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """The background loops, by task name (each run again if it fails: ``supervise``);
        the ones naming the group survive NOGROUP."""
        spec, opts, guarded, idle = self.spec, self.opts, self.groups.guarded, self.idle
        loops: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "acks": lambda: guarded(self.batcher.flush_loop),
            "reclaim": lambda: guarded(
                lambda: background.reclaim_loop(self.recovery, idle.reclaim)
            ),
            "lease": lambda: guarded(lambda: self.leases.loop(self.sources)),
            "stats": lambda: background.stats_loop(
                self.stats, self.client, self.keys.stats, opts.stats_interval, idle.heartbeat
            ),
            "watchdog": lambda: background.watchdog_loop(
                self.lanes, self.stats, spec.stream, spec.group
            ),
            "dlq retention": lambda: background.retention_loop(
                self.client, spec, self.name, self.rng
            ),
        }
        if self.alone:
            loops["scheduler"] = self.scheduler.loop
        return loops

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then shut down gracefully.

        A loop that fails is logged and run again (``supervise``); if one fails with an
        error no retry can fix (an ACL refusal), the others are stopped and the error is
        raised; unsettled entries stay pending under this name, as after a crash.
        """
        spawn = asyncio.get_running_loop().create_task
        where = self.keys.stream
        # A start that fails (a slot migrating, a node failing over) is tried again, until
        # ``stop``; one that no retry can fix (an ACL refusal, a key of the wrong type)
        # stops the worker.
        starting = spawn(keep_running(self.start, what="start", stream=where))
        stopping = spawn(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            await cancel([starting])
            return
        starting.result()
        reader = self.reader
        self.reader_task = spawn(
            keep_running(reader.loop, what="reader", stream=where, before_restart=reader.again),
            name=f"read {where}",
        )
        self.lane_tasks = self.lanes.start()
        self.background = {
            name: spawn(keep_running(loop, what=name, stream=where), name=f"{name} {where}")
            for name, loop in self._loops().items()
        }
        failed = await self._until(stop)
        if failed is not None:
            await self.abort()
            raise failed
        await self.shutdown()

    async def _until(self, stop: asyncio.Event) -> BaseException | None:
        """Wait for ``stop``, or for a task to fail (returns its error). A loop that ends
        without an error (nothing to do: no time limit, no retention) is simply done."""
        stopper = asyncio.ensure_future(stop.wait())
        running: set[asyncio.Future[Any]] = {stopper, *self._tasks()}
        try:
            while not stopper.done():
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stopper and not task.cancelled() and task.exception():
                        return task.exception()
            return None
        finally:
            stopper.cancel()

    def _tasks(self) -> list[asyncio.Task[None]]:
        reader = [self.reader_task] if self.reader_task is not None else []
        return [*reader, *self.lane_tasks, *self.background.values()]

    async def abort(self) -> None:
        """After a part failed: stop the others and give the connections back.

        Nothing is flushed (the failure may be Redis's); unsettled entries stay pending
        under this name and are re-read or reclaimed, as after a crash.
        """
        self.reader.closing = True
        self.buffer.seal()
        await cancel(self._tasks())
        self.scheduler.remove(self.schedule)
        self.lanes.close()
        await self.close_channels()

    async def shutdown(self) -> None:
        """Stop in order: the reader (its read under way may return), the lanes (they
        finish what is buffered, bounded by ``shutdown_timeout``), the background loops;
        then flush the last settlements and counters and leave the group if nothing is
        pending here. Unfinished entries stay pending: re-read or reclaimed later."""
        if self.reader_task is not None:
            await self.reader.stop(self.reader_task)
        self.buffer.seal()  # nothing more will be queued: idle lanes may now return
        _, late = await asyncio.wait(self.lane_tasks, timeout=self.opts.shutdown_timeout)
        await cancel([*late, *self.background.values()])
        self.scheduler.remove(self.schedule)
        self.lanes.close()
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await self.batcher.flush()
            await self.stats.publish(self.client, self.keys.stats)
            await self.retire()
        await self.close_channels()
        log.info("consumer %s stopped on %s", self.name, self.keys.stream)

    async def close_channels(self) -> None:
        """Give the pinned connections back to their pools."""
        await self.read_channel.close()
        await self.ack_channel.close()
        if self.claims_channel is not None:
            await self.claims_channel.close()

    async def retire(self) -> None:
        """Leave the group where nothing is pending under this name (keeps groups tidy)."""
        for source in self.sources:
            await calls.retire(stream=source.key, group=self.spec.group, consumer=self.name)(
                self.client
            )
