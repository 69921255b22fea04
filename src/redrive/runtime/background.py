"""Background loops of a consumer: retry scheduler, reclaimer, lease renewal, counters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from redis.exceptions import ResponseError

from redrive.runtime import recovery
from redrive.store.channel import TRANSPORT_ERRORS
from redrive.store.retention import INTERVAL, Retention, apply_retention

if TYPE_CHECKING:
    from redrive.runtime.consumer import Consumer
    from redrive.runtime.source import Source

log = logging.getLogger("redrive.background")

PROMOTE_BATCH = 100


async def _pause(event: asyncio.Event, seconds: float) -> None:
    """Sleep up to ``seconds``, waking early when ``event`` is set."""
    if seconds <= 0:
        return
    # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives as
    # the event fires, and the loop would then outlive its consumer.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def promote_loop(c: Consumer) -> None:
    """Move due retries to the retry stream; sleep until the next one is due.

    Every worker runs this; the script is atomic, so many schedulers never double a
    retry. The sleep is capped by ``scheduler_interval`` because another worker may
    schedule a retry due sooner than the one this worker knows of.
    """
    script = c.scripts.promote_due
    keys = [c.keys.due, c.keys.retry]
    interval = c.opts.scheduler_interval
    while not c.draining:
        c.schedule_changed.clear()
        now_ms = int(time.time() * 1000)
        try:
            moved, next_ms = await script(c.client, keys, [now_ms, PROMOTE_BATCH])
        except TRANSPORT_ERRORS:
            await asyncio.sleep(interval)
            continue
        if moved >= PROMOTE_BATCH:
            continue
        wait = interval
        if next_ms is not None:
            wait = min(interval, max(0.0, (float(next_ms) - time.time() * 1000) / 1000))
        # A retry scheduled here wakes the loop only if it is due before this wake-up.
        c.promote_at_ms = time.time() * 1000 + wait * 1000
        await _pause(c.schedule_changed, wait)
        c.promote_at_ms = 0.0


async def reclaim_loop(c: Consumer) -> None:
    """Reclaim entries of crashed consumers every ``reclaim_interval`` seconds."""
    interval = c.opts.reclaim_interval or c.spec.visibility_timeout / 4
    while not c.draining:
        await asyncio.sleep(interval)
        for source in c.sources:
            try:
                await recovery.reclaim(c, source)
            except TRANSPORT_ERRORS as exc:
                log.warning("reclaim on %s failed (%s)", source.key, type(exc).__name__)


async def lease_loop(c: Consumer) -> None:
    """Renew the claim on entries held longer than a third of the visibility timeout."""
    third = c.spec.visibility_timeout / 3
    while not c.draining:
        await asyncio.sleep(third / 2)
        cutoff = time.perf_counter() - third
        for source in c.sources:
            old = [eid for eid, since in source.held.items() if since < cutoff]
            if not old:
                continue
            try:
                lost = await c.scripts.renew(c.client, [source.key], [c.spec.group, c.name, *old])
            except TRANSPORT_ERRORS:
                continue
            now = time.perf_counter()
            for eid in old:
                if eid in source.held:
                    source.held[eid] = now
            if lost:
                dropped = drop_unstarted(c, source, set(lost))
                log.warning(
                    "lease lost on %d entries of %s (%d not started, dropped)",
                    len(lost),
                    source.key,
                    dropped,
                )


def drop_unstarted(c: Consumer, source: Source, lost: set[bytes]) -> int:
    """Forget buffered entries another consumer now owns: running them would only repeat
    its work (and the fence would reject the outcome anyway)."""
    dropped = 0
    for buffer in (c.queue, c.suspects):
        kept = [item for item in buffer if not (item[0] is source and item[1] in lost)]
        dropped += len(buffer) - len(kept)
        buffer.clear()  # in place: the lanes hold references to these deques
        buffer.extend(kept)
    for entry_id in lost:
        source.held.pop(entry_id, None)
    return dropped


async def watchdog_loop(c: Consumer) -> None:
    """Cancel handler runs that pass the handler's time limit (``timeout``).

    A handler that never returns (a network call without a timeout) would hold its lane
    for good, its lease renewed forever. Checked a few times per limit, so a run ends at
    most a quarter of the limit late; the lane turns the cancellation into a
    :class:`~redrive.errors.HandlerTimeout` (retried, then dead-lettered).
    """
    limit = c.spec.timeout
    if limit is None:
        return
    tick = min(1.0, max(0.01, limit / 4))
    while not c.draining:
        await asyncio.sleep(tick)
        hung = c.lanes.expire_hung(time.perf_counter())
        if hung:
            c.stats.timed_out += hung
            log.warning(
                "%d handler runs on %s passed the %gs time limit: cancelled, to be retried",
                hung, c.main.key, limit, extra={"stream": c.main.key, "group": c.spec.group},
            )  # fmt: skip


async def stats_loop(c: Consumer) -> None:
    """Publish counters to the group's stats hash once per ``stats_interval``."""
    while not c.draining:
        await asyncio.sleep(c.opts.stats_interval)
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await c.stats.publish(c.client, c.keys.stats)


async def retention_loop(c: Consumer) -> None:
    """Apply the handler's DLQ retention (``dlq_maxlen``, ``dlq_max_age``) now and then.

    Its own task, so trimming a large backlog never delays messages; the first pass waits
    a random part of the interval so that many workers do not trim in step.
    """
    policy = Retention(max_len=c.spec.dlq_maxlen, max_age=c.spec.dlq_max_age)
    wait = INTERVAL * c.rng.random()
    while not c.draining:
        await asyncio.sleep(wait)
        wait = INTERVAL
        if not policy.active:
            continue
        try:
            await apply_retention(c.client, c.spec.stream, policy, by=c.name)
        except (*TRANSPORT_ERRORS, ResponseError) as exc:
            log.warning("dlq retention on %s failed (%s)", c.spec.stream, exc)
