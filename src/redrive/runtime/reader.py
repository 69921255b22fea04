"""The reader: XREADGROUP over the source stream and its retry stream, into the buffer.

Each read is one round trip that first carries whatever the ack batcher holds (acks and
failure moves), so settling costs no round trip of its own while messages flow. It reads
only what the buffer has room for, and while the circuit breaker is open only what may be
probed. After a transport error (a lost reply leaves entries pending under this name) it
re-reads this consumer's own pending entries before reading new ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.exceptions import ResponseError

from redrive.core.breaker import CircuitBreaker
from redrive.runtime.acks import AckBatcher
from redrive.runtime.buffer import Buffer
from redrive.runtime.groups import Groups, is_nogroup
from redrive.runtime.idempotency import Claims
from redrive.runtime.recovery import Recovery
from redrive.runtime.settings import HandlerSpec
from redrive.runtime.source import Source
from redrive.runtime.stats import Stats
from redrive.store.channel import TRANSPORT_ERRORS, Channel, Redirected

log = logging.getLogger("redrive.consumer")


def is_unblocked(exc: BaseException) -> bool:
    """Whether Redis ended a blocked read because its stream key is gone (deleted, or
    migrated to another cluster node)."""
    return isinstance(exc, ResponseError) and str(exc).startswith("UNBLOCKED")


#: The longest wait between reads while Redis cannot be reached (seconds).
RETRY_CAP = 0.5

#: Added to BLOCK for a read's deadline: a dead peer is noticed, BLOCK is never cut short.
READ_MARGIN = 10.0


class Reader:
    """Fills the buffer from both streams of one handler."""

    def __init__(
        self,
        *,
        spec: HandlerSpec,
        consumer: str,
        block_ms: int,
        main: Source,
        retry: Source,
        channel: Channel,
        buffer: Buffer,
        batcher: AckBatcher,
        recovery: Recovery,
        groups: Groups,
        breaker: CircuitBreaker | None,
        stats: Stats,
        claims: Claims | None = None,
    ) -> None:
        self.spec = spec
        self.claims = claims  # an idempotent handler's: keys are claimed as entries arrive
        self.consumer = consumer
        self.block_ms = block_ms
        self.main = main
        self.retry = retry
        self.channel = channel
        self.buffer = buffer
        self.batcher = batcher
        self.recovery = recovery
        self.groups = groups
        self.breaker = breaker
        self.stats = stats
        #: Re-read the own pending entries before the next read (at start, after an error).
        self.reread = True
        self.closing = False
        self.reading = False  # a read round trip is under way (its entries are in hand)
        self.deadline = block_ms / 1000 + READ_MARGIN
        #: Bytes per entry, a moving average of what was read (at first: the largest).
        self.entry_size = float(spec.max_payload_bytes)
        self.sized = False

    async def stop(self, task: asyncio.Task[None]) -> None:
        """Stop ``task`` (this reader's loop) without stranding delivered entries.

        A read under way may return, so the entries it delivers are buffered and handled
        instead of left in the pending list: a blocked read is ended at once with
        ``CLIENT UNBLOCK`` (it returns what it has), or, where the ACL user may not, when
        its BLOCK runs out (plus a second for the reply). A reader waiting for room or
        backing off has nothing in hand: it stops at once.
        """
        self.closing = True
        wait = 1.0
        if not self.reading:
            task.cancel()
        elif not await self.channel.unblock():
            wait += self.block_ms / 1000
        await asyncio.wait([task], timeout=wait)
        task.cancel()

    def again(self) -> None:
        """Before the loop runs again after it failed: it may have left entries pending."""
        self.reread = True
        self.reading = False

    async def loop(self) -> None:
        """Read while there is room; on a transport error back off and re-read own pending."""
        failures = 0
        while not self.closing:
            try:
                if self.reread:
                    await self.recovery.reread_own()
                    self.reread = False
                count = await self.room()
                if count and not self.closing:
                    self.reading = True
                    try:
                        await self.read_into_buffer(count)
                    finally:
                        self.reading = False
                failures = 0
            except TRANSPORT_ERRORS as exc:
                failures += 1
                # A read refused by a cluster node (failing over, migrating) delivered
                # nothing; any other failure may have left entries pending unseen.
                if not (isinstance(exc, Redirected) and exc.last_refused):
                    self.reread = True
                if failures & (failures - 1) == 0:  # 1st, 2nd, 4th…: an outage, not a flood
                    log.warning(
                        "%s: redis unreachable (%s: %s, %d times); retrying",
                        self.main.key, type(exc).__name__, exc, failures,
                        extra={"stream": self.main.key},
                    )  # fmt: skip
                # Short: a failover or a reshard ends any moment, and the read resumes
                # within RETRY_CAP of it (a cluster is down for about a second then).
                await asyncio.sleep(min(RETRY_CAP, 0.05 * 2**failures))
            except ResponseError as exc:
                if is_unblocked(exc):
                    # The key a read was blocked on was deleted, or migrated to another
                    # cluster node: make sure the group exists again and read on.
                    log.warning("%s: %s; reading again", self.main.key, exc)
                elif not is_nogroup(exc):
                    raise
                await self.groups.ensure(warn=True)

    async def room(self) -> int:
        """Wait until the buffer has drained, then return how many entries to read."""
        spec = self.spec
        # Read again once half the read-ahead is used up, so the next batch is on its way
        # while the lanes finish this one.
        buffer = self.buffer
        held = await buffer.wait_room(spec.concurrency + spec.prefetch)
        count = spec.concurrency + 2 * spec.prefetch - held
        budget = buffer.budget
        if budget.limit is not None:  # and no more bytes than the process may still hold
            await budget.wait()
            left = budget.left() or 0
            count = max(1, min(count, int(left / self.entry_size)))
        breaker = self.breaker
        if breaker is not None:
            allowed = breaker.allowance(time.monotonic())
            if allowed is not None:  # open or half-open: read only what may be probed
                if allowed == 0 or self.buffer.queue:
                    await asyncio.sleep(min(0.1, max(0.01, breaker.wait(time.monotonic()) or 0)))
                    return 0
                count = min(count, allowed)
        return count

    async def read(self, count: int) -> Any:
        """One round trip: the pending acks and moves, then XREADGROUP over both streams."""
        batcher = self.batcher
        batch = batcher.take()
        commands = batcher.commands(batch)
        commands.append(
            ("XREADGROUP", "GROUP", self.spec.group, self.consumer, "COUNT", count, "BLOCK",
             self.block_ms, "STREAMS", self.main.key, self.retry.key, ">", ">")
        )  # fmt: skip
        try:
            results = await self.channel.roundtrip(commands, self.deadline)
        except BaseException:
            batcher.give_back(batch)
            raise
        await batcher.settle(batch, results[:-1])
        reply = results[-1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def read_into_buffer(self, count: int) -> None:
        """Read, claim the idempotency keys of what came (if the handler has them), queue."""
        reply = await self.read(count)
        if self.claims is not None and reply:
            await self.claims.preclaim(self.entries(reply))
        self.accept(reply)

    def entries(self, reply: Any) -> list[tuple[Source, bytes, list[bytes]]]:
        """The ``(source, id, fields)`` of a read's entries that have their fields."""
        main, retry = self.main, self.retry
        return [
            (main if name == main.name_b else retry, entry_id, flat)
            for name, entries in reply
            for entry_id, flat in entries
            if flat is not None
        ]

    def accept(self, reply: Any) -> None:
        """Queue the entries of an XREADGROUP reply for the lanes."""
        if not reply:
            return
        now = time.perf_counter()
        buffer = self.buffer
        main, retry = self.main, self.retry
        received = 0
        weight = 0
        for name, entries in reply:
            received += buffer.add(main if name == main.name_b else retry, entries, now)
            weight += buffer.last_bytes
        if received:  # what an entry of this handler weighs, for the next read's count
            size = max(1.0, weight / received)
            self.entry_size = size if not self.sized else 0.8 * self.entry_size + 0.2 * size
            self.sized = True
        self.stats.received += received
        buffer.wake()
