"""Recovery: re-reading this consumer's own pending entries, and reclaiming stale ones.

Own pending entries are re-read at start and after every reconnect (a lost reply leaves
entries pending under this consumer). Entries of crashed consumers are reclaimed with
XAUTOCLAIM once idle past the visibility timeout.

An entry re-delivered once (one crash or stall) simply runs again with the others. An
entry re-delivered a second time is a *suspect*: it may be the message that kills the
worker. Suspects run one at a time with nothing else in flight (see ``isolation``), and
their isolated runs are counted in the ``starts`` hash; once the two shared runs plus the
isolated ones reach ``max_deliveries`` the entry goes to the dead-letter stream instead
of running again. Counting runs, not deliveries, matters: every entry that merely sat in
the crashed worker's buffer is re-delivered too, and must not be dead-lettered along
with the killer. Isolating only second re-deliveries keeps recovery from an ordinary
crash (hundreds of buffered entries) concurrent.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from redrive.core.ids import id_key
from redrive.runtime.acks import AckBatcher
from redrive.runtime.buffer import Buffer
from redrive.runtime.moves import Settler
from redrive.runtime.settings import HandlerSpec
from redrive.runtime.source import Source
from redrive.runtime.stats import Stats

if TYPE_CHECKING:
    from redrive.runtime.tracing import ConsumerTracing

log = logging.getLogger("redrive.recovery")

PAGE = 100
#: Runs an entry gets among other entries before it is isolated as a suspect.
SHARED_RUNS = 2
#: A last-resort bound on raw deliveries (e.g. entries bouncing between stalled workers).
DELIVERY_BOUND = 20


class Recovery:
    """Re-delivers entries pending under this consumer, and reclaims stale ones."""

    def __init__(
        self,
        *,
        client: Redis,
        spec: HandlerSpec,
        consumer: str,
        sources: tuple[Source, ...],
        buffer: Buffer,
        batcher: AckBatcher,
        settler: Settler,
        stats: Stats,
        tracing: ConsumerTracing | None = None,
    ) -> None:
        self.client = client
        self.spec = spec
        self.group = spec.group
        self.consumer = consumer
        self.sources = sources
        self.buffer = buffer
        self.batcher = batcher
        self.settler = settler
        self.stats = stats
        self.tracing = tracing  # told each re-delivery's count (a span attribute)

    async def reread_own(self) -> None:
        """Deliver again every entry pending under this consumer's name (ID 0 history)."""
        for source in self.sources:
            last = b"0-0"
            while True:
                reply: Any = await self.client.xreadgroup(
                    self.group, self.consumer, {source.key: last}, count=PAGE
                )
                entries = reply[0][1] if reply else []
                if not entries:
                    break
                counts = await self._deliveries(source, [e[0] for e in entries])
                # XREADGROUP on history counts as a delivery: the count already includes it.
                n = self.admit(source, entries, counts)
                if n:
                    log.info("re-delivering %d own pending entries of %s", n, source.key)
                last = entries[-1][0]
                if len(entries) < PAGE:
                    break

    async def reclaim(self, source: Source) -> int:
        """XAUTOCLAIM entries idle past the visibility timeout; returns how many were taken."""
        spec = self.spec
        min_idle = int(spec.visibility_timeout * 1000)
        cursor: bytes | str = "0-0"
        taken = 0
        for page in range(10):  # bounded per round; the next round continues
            room = spec.concurrency + spec.prefetch - self.buffer.size()
            if room <= 0:
                if page:
                    break
                # A reserved share even when the buffer is full: under a sustained backlog
                # the reader always fills it, and a crashed consumer's entries would wait for
                # the whole backlog to drain (seen: 100 s against a 1.5 s visibility timeout).
                room = max(10, spec.prefetch // 4)
            reply: Any = await self.client.xautoclaim(
                source.key, self.group, self.consumer, min_idle, start_id=cursor,
                count=min(room, PAGE),
            )  # fmt: skip
            cursor, entries = reply[0], [e for e in reply[1] if e is not None]
            for entry_id in reply[2] if len(reply) > 2 else []:  # Redis >= 7: entry gone
                await self.settler.lost(source, entry_id)
            counts = await self._deliveries(source, [e[0] for e in entries])
            # XAUTOCLAIM raised the counter: deliveries so far include this one.
            taken += self.admit(source, entries, counts)
            if cursor in (b"0-0", "0-0"):
                break
        if taken:
            self.stats.reclaimed += taken
            log.info("reclaimed %d stale entries of %s", taken, source.key)
        return taken

    def admit(self, source: Source, entries: list[Any], counts: dict[bytes, int]) -> int:
        """Queue entries still under the delivery limit; dead-letter or record the rest.

        ``counts`` holds each entry's delivery count, this delivery included.
        """
        limit = self.spec.max_deliveries
        buffer, batcher, settler = self.buffer, self.batcher, self.settler
        settling = batcher.settling(source)
        now = time.perf_counter()
        queued = 0
        for entry_id, fields in entries:
            if buffer.holds(source, entry_id):
                continue  # still being handled in this process (a reconnect, not a crash)
            if entry_id in settling:
                continue  # handled here, its ack or move goes out next: never run it again
            if batcher.was_acked(source, entry_id):
                # Acked before, and pending again: Redis lost the ack (restarted from an AOF
                # a second behind). Ack it again instead of running it again.
                batcher.ack(source, entry_id)
                continue
            before = counts.get(entry_id, 1) - 1  # earlier deliveries, none with an outcome
            if fields is None:
                settler.trimmed(source, entry_id)
            elif before >= max(limit * 4, DELIVERY_BOUND) or before >= limit == 1:
                settler.exceeded(source, entry_id, fields, before)
            else:
                buffer.add_recovered(source, entry_id, fields, now, suspect=before >= SHARED_RUNS)
                queued += 1
                if self.tracing is not None:
                    self.tracing.redelivered(source.key, entry_id, before + 1)
        if queued:
            buffer.wake()
        return queued

    async def _deliveries(self, source: Source, ids: list[bytes]) -> dict[bytes, int]:
        """Delivery counts of ``ids`` (owned by this consumer), one XPENDING per page."""
        if not ids:
            return {}
        lo, hi = min(ids, key=id_key), max(ids, key=id_key)
        rows: list[dict[str, Any]] = await self.client.xpending_range(
            source.key, self.group, min=lo, max=hi, count=len(ids) * 4 + 16,
            consumername=self.consumer,
        )  # fmt: skip
        return {row["message_id"]: int(row["times_delivered"]) for row in rows}
