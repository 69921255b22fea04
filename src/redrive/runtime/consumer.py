"""The consumer of one handler: reads ``S`` and its retry stream, dispatches, settles.

Life cycle (DESIGN §4): create the groups, re-read this consumer's own pending entries,
then loop: XREADGROUP (with the pending acks pipelined in the same round trip) → lanes run
the handler → success is acked in batches, failures are moved by one Lua call each.
Background tasks promote due retries, reclaim entries of crashed consumers, renew leases
of long handlers, flush acks that the reader did not take, and publish counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from redrive.core.breaker import BreakerState, CircuitBreaker, Transition
from redrive.runtime import acks, background, dispatch, groups, recovery
from redrive.runtime.settings import HandlerSpec, Middleware, WorkerOptions
from redrive.runtime.source import Source
from redrive.runtime.stats import Stats
from redrive.store.channel import TRANSPORT_ERRORS, Channel
from redrive.store.keys import STREAMS_INDEX, StreamKeys
from redrive.store.scripts import scripts

log = logging.getLogger("redrive.consumer")

Item = tuple[Source, bytes, list[bytes] | None]


def _raw(response: Any, **options: Any) -> Any:
    return response


def use_raw_replies(client: Redis) -> None:
    """Skip redis-py's reply parsing for the stream commands on the hot path."""
    for command in ("XREADGROUP", "XAUTOCLAIM"):
        client.set_response_callback(command, _raw)


class Consumer:
    """Runs one handler spec as one named consumer of its group."""

    def __init__(
        self,
        spec: HandlerSpec,
        opts: WorkerOptions,
        client: Redis,
        reader: Redis,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.spec = spec
        self.middleware = tuple(middleware)
        self.opts = opts
        self.client = client
        self.reader = reader
        self.name = opts.consumer
        self.keys = StreamKeys.of(spec.stream, spec.group)
        self.main = Source(self.keys.stream, spec.stream, trusted=False)
        self.retry = Source(self.keys.retry, spec.stream, trusted=True)
        self.sources = (self.main, self.retry)
        self.scripts = scripts()
        self.rng = random.Random()
        self.breaker = CircuitBreaker(spec.breaker, self.breaker_moved) if spec.breaker else None
        self.stats = Stats(spec.stream, spec.group, self.name, metrics=opts.metrics)
        self.stats.breaker = self.breaker
        self.queue: deque[Item] = deque()
        self.suspects: deque[Item] = deque()  # re-delivered after a crash: run one at a time
        self.suspect_busy = False
        self.suspect_entry: bytes | None = None
        self.inflight = 0
        self.closing = False
        self.draining = False
        self.need_own_pending = True
        self.outbox: list[acks.Move] = []  # failure moves waiting for the next round trip
        self.in_flight: list[acks.Batch] = []  # sent, reply not yet read
        self.run_id: str | None = None  # the server's: tells a restart from a deleted group
        # Plain flags beside the events: the lanes test a bool per message instead of
        # calling Event.set() (a method call per message is measurable on the hot path).
        self.capacity = asyncio.Event()
        self.reader_waiting = False
        self.ack_wanted = asyncio.Event()
        self.ack_signalled = False
        self.schedule_changed = asyncio.Event()
        self.promote_at_ms = 0.0  # when the sleeping scheduler wakes next (0: awake)
        self.lanes = dispatch.Lanes(self)
        self.channel = Channel(reader, self.keys.stream)  # cluster: the slot of S and its keys
        self.ack_channel = Channel(client, self.keys.stream)
        # One deadline per round trip, above BLOCK: a dead peer is noticed, BLOCK never cut.
        self.read_deadline = opts.block_ms / 1000 + 10.0
        self._tasks: list[asyncio.Task[None]] = []
        use_raw_replies(reader)
        use_raw_replies(client)

    def breaker_moved(self, t: Transition) -> None:
        """Log every change of the breaker at WARNING (a pause must be visible) and count it."""
        extra = {"stream": self.main.key, "group": self.spec.group, "breaker": t.after.value}
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
                self.main.key, self.spec.group, why, self.spec.breaker.open_seconds,  # type: ignore[union-attr]
                hint, extra=extra,
            )  # fmt: skip
        elif t.after is BreakerState.HALF_OPEN:
            log.warning("breaker of %s (%s) half-open: probing", self.main.key, self.spec.group,
                        extra=extra)  # fmt: skip
        else:
            self.stats.breaker_closed += 1
            log.warning("breaker of %s (%s) closed: a probe succeeded, reading resumed",
                        self.main.key, self.spec.group, extra=extra)  # fmt: skip

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Create groups, load scripts and register the stream in the index."""
        await self.scripts.load_all(self.client)
        self.run_id = await groups.run_id(self)
        await self.ensure_groups(warn=False)
        await self.client.sadd(STREAMS_INDEX, self.spec.stream)

    async def ensure_groups(self, *, warn: bool) -> None:
        """Create the groups if missing (after a restart without persistence: NOGROUP)."""
        await groups.ensure(self, warn=warn)

    async def on_response_error(self, exc: Exception) -> None:
        """An error reply: NOGROUP recreates the groups, anything else is raised."""
        await groups.on_error_reply(self, exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then shut down gracefully."""
        await self.start()
        spawn = asyncio.get_running_loop().create_task
        self._tasks = [
            spawn(self.read_loop(), name=f"read {self.main.key}"),
            *self.lanes.start(),
            spawn(groups.guarded(self, acks.flush_loop), name="acks"),
            spawn(background.promote_loop(self), name="scheduler"),
            spawn(groups.guarded(self, background.reclaim_loop), name="reclaim"),
            spawn(groups.guarded(self, background.lease_loop), name="lease"),
            spawn(background.stats_loop(self), name="stats"),
            spawn(background.watchdog_loop(self), name="watchdog"),
            spawn(background.retention_loop(self), name="dlq retention"),
        ]
        stopper = spawn(stop.wait())
        await asyncio.wait([stopper, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception():
                await self.abort()
                raise task.exception()  # type: ignore[misc]
        await self.shutdown()

    async def abort(self) -> None:
        """After a part failed: stop the others and give the connections back.

        Nothing is flushed (the failure may be Redis's); unsettled entries stay pending
        under this name and are re-read or reclaimed, as after a crash.
        """
        self.closing = self.draining = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.lanes.close()
        await self.channel.close()
        await self.ack_channel.close()

    async def shutdown(self) -> None:
        """Stop reading, finish what is buffered (bounded), flush acks and counters.

        The reader's current XREADGROUP is allowed to return (at most BLOCK), so entries
        already delivered are handled instead of being stranded in the pending list.
        """
        self.closing = True
        n = self.spec.concurrency
        reader, lanes, rest = self._tasks[0], self._tasks[1 : 1 + n], self._tasks[1 + n :]
        await asyncio.wait([reader], timeout=self.read_deadline - 9.0)
        reader.cancel()
        self.draining = True  # nothing more will be queued: idle lanes may now return
        self.capacity.set()
        self.lanes.wake_all()
        _, late = await asyncio.wait(lanes, timeout=self.opts.shutdown_timeout)
        for task in (*late, *rest):
            task.cancel()  # unfinished entries stay pending: re-read or reclaimed later
        await asyncio.gather(reader, *late, *rest, return_exceptions=True)
        self.lanes.close()
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await acks.flush(self)
            await self.stats.publish(self.client, self.keys.stats)
            await self.retire()
        await self.channel.close()
        await self.ack_channel.close()
        log.info("consumer %s stopped on %s", self.name, self.main.key)

    async def retire(self) -> None:
        """Leave the group where nothing is pending under this name (keeps groups tidy)."""
        for source in self.sources:
            await self.scripts.retire(self.client, [source.key], [self.spec.group, self.name])

    # -- reading ------------------------------------------------------------------------

    async def read_loop(self) -> None:
        """Read while there is room; on a transport error back off and re-read own pending."""
        failures = 0
        while not self.closing:
            try:
                if self.need_own_pending:
                    await recovery.reread_own(self)
                    self.need_own_pending = False
                count = await self.room()
                if count:
                    self.accept(await self.read(count))
                failures = 0
            except TRANSPORT_ERRORS as exc:
                failures += 1
                self.need_own_pending = True
                log.warning("redis unreachable (%s); retrying", type(exc).__name__)
                await asyncio.sleep(min(5.0, 0.05 * 2**failures))
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_groups(warn=True)

    async def room(self) -> int:
        """Wait until the buffer has drained, then return how many entries to read."""
        spec = self.spec
        # Read again once half the read-ahead is used up, so the next batch is on its way
        # while the lanes finish this one.
        low_water = spec.concurrency + spec.prefetch
        while True:
            held = len(self.queue) + len(self.suspects) + self.inflight
            if held <= low_water:
                break
            self.capacity.clear()
            self.reader_waiting = True
            try:
                await self.capacity.wait()
            finally:
                self.reader_waiting = False
        count = spec.concurrency + 2 * spec.prefetch - held
        breaker = self.breaker
        if breaker is not None:
            allowed = breaker.allowance(time.monotonic())
            if allowed is not None:  # open or half-open: read only what may be probed
                if allowed == 0 or self.queue:
                    await asyncio.sleep(min(0.1, max(0.01, breaker.wait(time.monotonic()) or 0)))
                    return 0
                count = min(count, allowed)
        return count

    async def read(self, count: int) -> Any:
        """One round trip: the pending acks, then XREADGROUP over both streams."""
        batch = acks.take(self)
        commands = acks.commands(self, batch)
        read = ("XREADGROUP", "GROUP", self.spec.group, self.name, "COUNT", count, "BLOCK",
                self.opts.block_ms, "STREAMS", self.main.key, self.retry.key, ">", ">")  # fmt: skip
        commands.append(read)
        try:
            results = await self.channel.roundtrip(commands, self.read_deadline)
        except BaseException:
            acks.give_back(self, batch)
            raise
        await acks.settle(self, batch, results[:-1])
        reply = results[-1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def accept(self, reply: Any) -> None:
        """Queue the entries of an XREADGROUP reply for the lanes."""
        if not reply:
            return
        now = time.perf_counter()
        queue = self.queue
        received = 0
        for name, entries in reply:
            source = self.main if name == self.main.name_b else self.retry
            held = source.held
            for entry_id, flat in entries:
                held[entry_id] = now
                queue.append((source, entry_id, flat))
            received += len(entries)
        self.stats.received += received
        self.lanes.wake()
