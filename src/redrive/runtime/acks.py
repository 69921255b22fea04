"""Batched, fenced settlements: acknowledgements and failure moves.

Successes are collected per stream and sent as one ``ack`` script call per stream; failure
moves (``schedule_retry``, ``dead_letter``) wait in the consumer's outbox. Both go out in
the reader's next XREADGROUP round trip or, when the reader is blocked, by the flush loop
after a short linger: a failure costs no round trip of its own, so the failure path is
about as cheap as the happy path. A batch whose reply was lost is given back and sent
again: settling twice is harmless (each script is fenced, and the second time the entry
is simply no longer pending).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from redrive.store.channel import TRANSPORT_ERRORS, Command
from redrive.store.scripts import Arg, Script

if TYPE_CHECKING:
    from redrive.runtime.consumer import Consumer
    from redrive.runtime.source import Source

log = logging.getLogger("redrive.acks")

ACK_DEADLINE = 10.0


@dataclass(slots=True)
class Move:
    """One fenced script call that settles a failed entry, and what to do with its reply."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Arg]
    source: Source
    entry_id: bytes
    done: Callable[[Any], None]

    def command(self) -> Command:
        """The EVALSHA of this move."""
        return ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)


@dataclass(slots=True)
class Batch:
    """What one round trip settles: acks per stream, then moves."""

    acks: list[tuple[Source, list[bytes]]] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.acks or self.moves)


def take(c: Consumer) -> Batch:
    """Remove and return the pending acks of both streams and the queued moves."""
    batch = Batch()
    for source in c.sources:
        if source.acks:
            batch.acks.append((source, source.acks))
            source.acks = []
    if c.outbox:
        batch.moves, c.outbox = c.outbox, []
    if batch:
        c.in_flight.append(batch)  # until settled or given back: see ``settling``
    return batch


def give_back(c: Consumer, batch: Batch) -> None:
    """Return a batch whose outcome is unknown, to be sent again."""
    _landed(c, batch)
    for source, ids in batch.acks:
        source.acks[:0] = ids
    c.outbox[:0] = batch.moves


def commands(c: Consumer, batch: Batch) -> list[Command]:
    """One ``ack`` script call (EVALSHA) per stream, then one call per move."""
    sha = c.scripts.ack.sha
    out: list[Command] = [
        ("EVALSHA", sha, 1, source.key, c.spec.group, c.name, source.delete, *ids)
        for source, ids in batch.acks
    ]
    out += [move.command() for move in batch.moves]
    return out


def settling(c: Consumer, source: Source) -> set[bytes]:
    """Entries of ``source`` whose outcome is known here but not yet sent to Redis.

    Such an entry must not run again when the own pending list is re-read (after a
    reconnect): its ack or move simply goes out with the next round trip.
    """
    ids = set(source.acks)
    ids.update(m.entry_id for m in c.outbox if m.source is source)
    for batch in c.in_flight:  # taken for a round trip whose reply has not come yet
        for acked, batch_ids in batch.acks:
            if acked is source:
                ids.update(batch_ids)
        ids.update(m.entry_id for m in batch.moves if m.source is source)
    return ids


def _landed(c: Consumer, batch: Batch) -> None:
    for i, sent in enumerate(c.in_flight):
        if sent is batch:
            del c.in_flight[i]
            return


async def settle(c: Consumer, batch: Batch, results: list[Any]) -> None:
    """Count the outcome of each call; re-run calls that met NOSCRIPT."""
    try:
        await _settle(c, batch, results)
    finally:
        _landed(c, batch)  # anything unsettled is queued again by now


async def _settle(c: Consumer, batch: Batch, results: list[Any]) -> None:
    n = len(batch.acks)
    for (source, ids), reply in zip(batch.acks, results[:n], strict=True):
        result = reply
        if isinstance(reply, NoScriptError):
            result = await c.scripts.ack(
                c.client, [source.key], [c.spec.group, c.name, source.delete, *ids]
            )
        if isinstance(result, Exception):
            log.error("ack of %d entries on %s failed: %s", len(ids), source.key, result)
            source.acks[:0] = ids
            continue
        _count(c, source, ids, result)
    for move, reply in zip(batch.moves, results[n:], strict=True):
        result = reply
        if isinstance(reply, NoScriptError):
            result = await move.script(c.client, move.keys, move.args)
        if isinstance(result, Exception):
            c.outbox.append(move)  # sent again next round trip
            await c.on_response_error(result)  # NOGROUP recreates the group, else raises
            continue
        move.done(result)


def _count(c: Consumer, source: Source, ids: list[bytes], result: list[Any]) -> None:
    _, fenced, gone = result
    source.remember_acked(ids)
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
    """Send all pending acks and moves now (one round trip)."""
    batch = take(c)
    if not batch:
        return
    try:
        results = await c.ack_channel.roundtrip(commands(c, batch), ACK_DEADLINE)
    except BaseException:
        give_back(c, batch)
        raise
    await settle(c, batch, results)


def wanted(c: Consumer) -> None:
    """Ask the flush loop to send what is pending unless the reader takes it first."""
    if not c.ack_signalled:
        c.ack_signalled = True
        c.ack_wanted.set()


async def flush_loop(c: Consumer) -> None:
    """Flush what the reader did not piggyback within ``ack_linger`` seconds."""
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
