"""Recovery: re-reading this consumer's own pending entries, and reclaiming stale ones.

Own pending entries are re-read at start and after every reconnect (a lost reply leaves
entries pending under this consumer). Entries of crashed consumers are reclaimed with
XAUTOCLAIM once idle past the visibility timeout.

An entry re-delivered once (one crash or stall) simply runs again with the others. An
entry re-delivered a second time is a *suspect*: it may be the message that kills the
worker. Suspects run one at a time with nothing else in flight (see ``dispatch``), and
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

from redrive.runtime import acks, moves

if TYPE_CHECKING:
    from redrive.runtime.consumer import Consumer
    from redrive.runtime.source import Source

log = logging.getLogger("redrive.recovery")

PAGE = 100
#: Runs an entry gets among other entries before it is isolated as a suspect.
SHARED_RUNS = 2
#: A last-resort bound on raw deliveries (e.g. entries bouncing between stalled workers).
DELIVERY_BOUND = 20


async def _deliveries(c: Consumer, source: Source, ids: list[bytes]) -> dict[bytes, int]:
    """Delivery counts of ``ids`` (owned by this consumer), one XPENDING per page."""
    if not ids:
        return {}
    lo, hi = min(ids, key=_order), max(ids, key=_order)
    rows: list[dict[str, Any]] = await c.client.xpending_range(
        source.key, c.spec.group, min=lo, max=hi, count=len(ids) * 4 + 16, consumername=c.name
    )
    return {row["message_id"]: int(row["times_delivered"]) for row in rows}


def _order(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


async def _admit(
    c: Consumer, source: Source, entries: list[Any], counts: dict[bytes, int], limit: int
) -> int:
    """Queue entries still under the delivery limit; dead-letter or record the rest."""
    queued = 0
    settling = acks.settling(c, source)
    for entry_id, flat in entries:
        fields = flat
        if entry_id in source.held:
            continue  # still being handled in this process (a reconnect, not a crash)
        if entry_id in settling:
            continue  # handled here, its ack or move goes out next: never run it again
        if entry_id in source.acked:
            # Acked before, and pending again: Redis lost the ack (restarted from an AOF
            # a second behind). Ack it again instead of running it again.
            source.acks.append(entry_id)
            acks.wanted(c)
            continue
        before = counts.get(entry_id, 1) - 1  # deliveries before this one, none with an outcome
        if fields is None:
            await moves.trimmed(c, source, entry_id)
        elif before >= max(limit * 4, DELIVERY_BOUND) or before >= limit == 1:
            await moves.exceeded(c, source, entry_id, fields, before)
        else:
            source.held[entry_id] = time.perf_counter()
            if before >= SHARED_RUNS:
                c.suspects.append((source, entry_id, fields))
            else:
                # Older than anything buffered: run it next, not after the backlog.
                c.queue.appendleft((source, entry_id, fields))
            queued += 1
    if queued:
        c.lanes.wake()
    return queued


async def reread_own(c: Consumer) -> None:
    """Deliver again every entry pending under this consumer's name (ID 0 history)."""
    for source in c.sources:
        last = b"0-0"
        while True:
            reply: Any = await c.client.xreadgroup(
                c.spec.group, c.name, {source.key: last}, count=PAGE
            )
            entries = reply[0][1] if reply else []
            if not entries:
                break
            counts = await _deliveries(c, source, [e[0] for e in entries])
            # XREADGROUP on history counts as a delivery, so the count already includes it.
            n = await _admit(c, source, entries, counts, c.spec.max_deliveries)
            if n:
                log.info("re-delivering %d own pending entries of %s", n, source.key)
            last = entries[-1][0]
            if len(entries) < PAGE:
                break


async def reclaim(c: Consumer, source: Source) -> int:
    """XAUTOCLAIM entries idle past the visibility timeout; returns how many were taken."""
    min_idle = int(c.spec.visibility_timeout * 1000)
    cursor: bytes | str = "0-0"
    taken = 0
    for page in range(10):  # bounded per round; the next round continues
        room = c.spec.concurrency + c.spec.prefetch - len(c.queue) - len(c.suspects) - c.inflight
        if room <= 0:
            if page:
                break
            # A reserved share even when the buffer is full: under a sustained backlog the
            # reader always fills it, and a crashed consumer's entries would wait for the
            # whole backlog to drain (seen: 100 s against a 1.5 s visibility timeout).
            room = max(10, c.spec.prefetch // 4)
        reply: Any = await c.client.xautoclaim(
            source.key, c.spec.group, c.name, min_idle, start_id=cursor, count=min(room, PAGE)
        )
        cursor, entries = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []  # Redis >= 7: ids whose entry is gone
        for entry_id in deleted:
            await moves.lost(c, source, entry_id)
        counts = await _deliveries(c, source, [e[0] for e in entries if e is not None])
        # XAUTOCLAIM raised the counter: deliveries so far include this one.
        n = await _admit(
            c, source, [e for e in entries if e is not None], counts, c.spec.max_deliveries
        )
        taken += n
        if cursor in (b"0-0", "0-0"):
            break
    if taken:
        c.stats.reclaimed += taken
        log.info("reclaimed %d stale entries of %s", taken, source.key)
    return taken
