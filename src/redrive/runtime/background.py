"""The background loops of a consumer that need no state of their own.

Each takes exactly its collaborators; the consumer runs them as named tasks and cancels
them at shutdown (after the lanes finished). The loops with state live beside their state:
the scheduler (``scheduler``), lease renewal (``leases``), the ack flush (``acks``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from random import Random

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from redrive.runtime.dispatch import Lanes
from redrive.runtime.recovery import Recovery
from redrive.runtime.settings import HandlerSpec
from redrive.runtime.stats import Stats
from redrive.store.channel import TRANSPORT_ERRORS
from redrive.store.retention import INTERVAL, Retention, apply_retention

log = logging.getLogger("redrive.background")


async def reclaim_loop(recovery: Recovery, interval: float) -> None:
    """Reclaim entries of crashed consumers every ``interval`` seconds."""
    while True:
        await asyncio.sleep(interval)
        for source in recovery.sources:
            try:
                await recovery.reclaim(source)
            except TRANSPORT_ERRORS as exc:
                log.warning("reclaim on %s failed (%s)", source.key, type(exc).__name__)


async def watchdog_loop(lanes: Lanes, stats: Stats, stream: str, group: str) -> None:
    """Cancel handler runs that pass the handler's time limit (``timeout``).

    A handler that never returns (a network call without a timeout) would hold its lane
    for good, its lease renewed forever. Checked a few times per limit, so a run ends at
    most a quarter of the limit late; the lane turns the cancellation into a
    :class:`~redrive.errors.HandlerTimeout` (retried, then dead-lettered).
    """
    limit = lanes.spec.timeout
    if limit is None:
        return
    tick = min(1.0, max(0.01, limit / 4))
    while True:
        await asyncio.sleep(tick)
        hung = lanes.expire_hung(time.perf_counter())
        if hung:
            stats.timed_out += hung
            log.warning(
                "%d handler runs on %s passed the %gs time limit: cancelled, to be retried",
                hung, stream, limit, extra={"stream": stream, "group": group},
            )  # fmt: skip


async def stats_loop(
    stats: Stats, client: Redis, key: str, interval: float, heartbeat: float
) -> None:
    """Publish counters to the group's stats hash once per ``interval`` (while nothing
    changes, a metrics entry only once per ``heartbeat``)."""
    while True:
        await asyncio.sleep(interval)
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await stats.publish(client, key, heartbeat=heartbeat)


async def retention_loop(client: Redis, spec: HandlerSpec, consumer: str, rng: Random) -> None:
    """Apply the handler's DLQ retention (``dlq_maxlen``, ``dlq_max_age``) now and then.

    Its own task, so trimming a large backlog never delays messages; the first pass waits
    a random part of the interval so that many workers do not trim in step.
    """
    policy = Retention(max_len=spec.dlq_maxlen, max_age=spec.dlq_max_age)
    if not policy.active:
        return
    wait = INTERVAL * rng.random()
    while True:
        await asyncio.sleep(wait)
        wait = INTERVAL
        try:
            await apply_retention(client, spec.stream, policy, by=consumer)
        except (*TRANSPORT_ERRORS, ResponseError) as exc:
            log.warning("dlq retention on %s failed (%s)", spec.stream, exc)
