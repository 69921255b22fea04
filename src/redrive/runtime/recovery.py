"""Recovery: re-reading this consumer's own pending entries, and reclaiming stale ones.

Own pending entries are re-read at start and after every reconnect (a lost reply leaves
entries pending under this consumer). Entries of crashed consumers are reclaimed with
XAUTOCLAIM once idle past the visibility timeout. Either way an entry delivered
``max_deliveries`` times without an outcome goes to the dead-letter stream instead of
running again: a message that kills the worker must not kill it forever.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from redrive.runtime import moves

if TYPE_CHECKING:
    from redrive.runtime.consumer import Consumer
    from redrive.runtime.source import Source

log = logging.getLogger("redrive.recovery")

PAGE = 100


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
    for entry_id, flat in entries:
        fields = flat
        if entry_id in source.held:
            continue  # still being handled in this process (a reconnect, not a crash)
        if fields is None:
            await moves.trimmed(c, source, entry_id)
        elif counts.get(entry_id, 0) > limit:
            await moves.exceeded(c, source, entry_id, fields, counts[entry_id])
        else:
            source.held[entry_id] = time.monotonic()
            c.queue.append((source, entry_id, fields))
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
    for _ in range(10):  # bounded per round; the next round continues
        room = c.spec.concurrency + c.spec.prefetch - len(c.queue) - c.inflight
        if room <= 0:
            break
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
