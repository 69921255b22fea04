"""Batched, fenced acknowledgements.

Successes are collected per stream and sent as one ``ack`` script call per stream, either
in the reader's next XREADGROUP round trip or, when the reader is blocked, by the flush
loop after a short linger. A batch whose reply was lost is given back and sent again:
acking twice is harmless (the second time the ids are simply no longer pending).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from redrive.store.channel import TRANSPORT_ERRORS, Command

if TYPE_CHECKING:
    from redrive.runtime.consumer import Consumer
    from redrive.runtime.source import Source

log = logging.getLogger("redrive.acks")

Batch = list[tuple["Source", list[bytes]]]
ACK_DEADLINE = 10.0


def take(c: Consumer) -> Batch:
    """Remove and return the pending acks of both streams."""
    batch: Batch = []
    for source in c.sources:
        if source.acks:
            batch.append((source, source.acks))
            source.acks = []
    return batch


def give_back(batch: Batch) -> None:
    """Return a batch whose outcome is unknown, to be sent again."""
    for source, ids in batch:
        source.acks[:0] = ids


def commands(c: Consumer, batch: Batch) -> list[Command]:
    """One ``ack`` script call (EVALSHA) per stream of ``batch``."""
    sha = c.scripts.ack.sha
    return [
        ("EVALSHA", sha, 1, source.key, c.spec.group, c.name, source.delete, *ids)
        for source, ids in batch
    ]


async def settle(c: Consumer, batch: Batch, results: list[Any]) -> None:
    """Count the outcome of each ack call; re-run calls that met NOSCRIPT."""
    for (source, ids), reply in zip(batch, results, strict=True):
        result = reply
        if isinstance(reply, NoScriptError):
            result = await c.scripts.ack(
                c.client, [source.key], [c.spec.group, c.name, source.delete, *ids]
            )
        if isinstance(result, Exception):
            log.error("ack of %d entries on %s failed: %s", len(ids), source.key, result)
            source.acks[:0] = ids
            continue
        _count(c, source, result)


def _count(c: Consumer, source: Source, result: list[Any]) -> None:
    _, fenced, gone = result
    if fenced:
        c.stats.fenced += len(fenced)
        log.warning(
            "fence: %d acks on %s rejected, the entries now belong to another consumer",
            len(fenced),
            source.key,
            extra={"stream": source.key, "decision": "fenced", "count": len(fenced)},
        )
    if gone:
        c.stats.stale_acks += len(gone)


async def flush(c: Consumer) -> None:
    """Send all pending acks now (one round trip)."""
    batch = take(c)
    if not batch:
        return
    try:
        results = await c.ack_channel.roundtrip(commands(c, batch), ACK_DEADLINE)
    except BaseException:
        give_back(batch)
        raise
    await settle(c, batch, results)


async def flush_loop(c: Consumer) -> None:
    """Flush acks the reader did not piggyback within ``ack_linger`` seconds."""
    failures = 0
    while not c.draining:
        await c.ack_wanted.wait()
        c.ack_wanted.clear()
        c.ack_signalled = False
        await asyncio.sleep(c.opts.ack_linger)
        try:
            await flush(c)
            failures = 0
        except TRANSPORT_ERRORS as exc:
            failures += 1
            if failures & (failures - 1) == 0:  # 1st, 2nd, 4th, 8th…: an outage, not a flood
                log.warning("ack flush failed %d times (%s); retrying", failures, exc)
            await asyncio.sleep(min(2.0, 0.05 * 2**failures))
            c.ack_wanted.set()
