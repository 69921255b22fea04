"""The ack batcher: batched, fenced settlements of one consumer.

Successes are collected per stream and sent as one ``ack`` script call per stream;
failure moves (``schedule_retry``, ``dead_letter``, built by the settler) wait in the
outbox. Both go out in the reader's next XREADGROUP round trip (``take`` / ``settle``) or,
when the reader is blocked, by the flush loop after a short linger: a failure costs no
round trip of its own, so the failure path is about as cheap as the happy path. A batch
whose reply was lost is given back and sent again: settling twice is harmless (each
script is fenced, and the second time the entry is simply no longer pending).

The batcher is the only owner of what is settled here but not yet in Redis (``settling``)
and of the memory of recent acks, which recovery asks before it runs an entry again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from redrive.runtime.groups import is_nogroup
from redrive.runtime.source import Source
from redrive.runtime.stats import Stats
from redrive.store import calls
from redrive.store import idempotency as idem_calls
from redrive.store.calls import AckResult, Call
from redrive.store.channel import TRANSPORT_ERRORS, Channel, Command

log = logging.getLogger("redrive.acks")

ACK_DEADLINE = 10.0
#: Recently acked ids kept per stream: an ack that Redis lost (a crash before its fsync)
#: makes the entry pending again; it is acked again, not run again.
ACKED_MEMORY = 20_000


@dataclass(slots=True)
class Move:
    """One fenced script call that settles an entry, and what to do with its result.

    ``failed`` (if given) takes an error reply that is the entry's own fault (a commit's
    effect on a key of the wrong type): the move is then not sent again.
    """

    call: Call[Any]
    source: Source
    entry_id: bytes
    done: Callable[[Any], None]  # receives the parsed result
    failed: Callable[[Exception], None] | None = None


#: One ack call of a round trip: its stream, ids, script call, and (``ack_done``) the
#: idempotency key of each id, to be marked done with the ack.
Acks = tuple[Source, list[bytes], Call[AckResult], list[str | bytes] | None]


@dataclass(slots=True)
class Batch:
    """What one round trip settles: acks per stream (with their script call), then moves."""

    acks: list[Acks] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.acks or self.moves)


class AckBatcher:
    """Acks and moves of one consumer, from the lanes and the settler to Redis.

    ``on_error_reply`` handles a move's error reply (NOGROUP recreates the group, anything
    else raises); ``linger`` is how long the flush loop waits for the reader to take a batch.
    """

    def __init__(
        self,
        *,
        client: Redis,
        channel: Channel,
        group: str,
        consumer: str,
        sources: Sequence[Source],
        stats: Stats,
        linger: float,
        on_error_reply: Callable[[Exception], Awaitable[None]],
        done_ttl_ms: int | None = None,
        idempotency_keys: tuple[str, str] = ("", ""),
    ) -> None:
        self.client = client
        self.channel = channel
        self.group = group
        self.consumer = consumer
        self.sources = tuple(sources)
        self.stats = stats
        self.linger = linger
        self.on_error_reply = on_error_reply
        self.ids: dict[Source, list[bytes]] = {s: [] for s in sources}
        # Idempotent runs: ids and, in the same order, their keys to mark done (for
        # ``done_ttl_ms``) in the same script as the ack.
        self.done: dict[Source, tuple[list[bytes], list[str | bytes]]] = {
            s: ([], []) for s in sources
        }
        self.done_ttl_ms = done_ttl_ms
        #: The group's done marks and claims (``store/keys.py``), for ``ack_done``.
        self.idempotency_keys = idempotency_keys
        # The memory of recent acks: per round trip one bytes blob of its ids, oldest
        # first. Asked only when an own pending entry is read again (rare), so a scan of
        # a few hundred kB is cheap there, while a blob costs about 16 bytes an id and
        # one join per round trip on the hot path (a set of 20,000 ids held ~4 MB).
        self.acked: dict[Source, deque[bytes]] = {s: deque() for s in sources}
        self._acked_count: dict[Source, int] = dict.fromkeys(sources, 0)
        self.outbox: list[Move] = []  # failure moves waiting for the next round trip
        self.in_flight: list[Batch] = []  # sent, reply not yet read
        # A plain flag beside the event: the lanes test a bool per message instead of
        # calling Event.set() (a method call per message is measurable on the hot path).
        self.signalled = False
        self._wanted = asyncio.Event()

    # -- what the lanes, the settler and recovery hand in --------------------------------

    def ack(self, source: Source, entry_id: bytes) -> None:
        """Acknowledge ``entry_id`` with the next round trip."""
        self.ids[source].append(entry_id)
        if not self.signalled:
            self.signalled = True
            self._wanted.set()

    def ack_done(self, source: Source, entry_id: bytes, key: str | bytes) -> None:
        """Acknowledge ``entry_id`` and mark its idempotency ``key`` done, in one step,
        with the next round trip."""
        ids, keys = self.done[source]
        ids.append(entry_id)
        keys.append(key)
        self.want()

    def send(self, move: Move) -> None:
        """Queue a fenced move for the next round trip (the reader's or the flush loop's).

        Until it is sent the entry stays pending under this consumer: a crash re-delivers
        it, a reconnect does not run it again (``settling``), a lost reply sends it again.
        """
        self.outbox.append(move)
        self.want()

    def want(self) -> None:
        """Ask the flush loop to send what is pending unless the reader takes it first."""
        if not self.signalled:
            self.signalled = True
            self._wanted.set()

    # -- what recovery asks --------------------------------------------------------------

    def settling(self, source: Source) -> set[bytes]:
        """Entries of ``source`` whose outcome is known here but not yet sent to Redis.

        Such an entry must not run again when the own pending list is re-read (after a
        reconnect): its ack or move simply goes out with the next round trip.
        """
        ids = set(self.ids[source])
        ids.update(self.done[source][0])
        ids.update(m.entry_id for m in self.outbox if m.source is source)
        for batch in self.in_flight:  # taken for a round trip whose reply has not come yet
            for acked, batch_ids, _, _ in batch.acks:
                if acked is source:
                    ids.update(batch_ids)
            ids.update(m.entry_id for m in batch.moves if m.source is source)
        return ids

    def was_acked(self, source: Source, entry_id: bytes) -> bool:
        """Whether ``entry_id`` was acked recently (pending again: Redis lost the ack)."""
        needle = b"\n" + entry_id + b"\n"
        return any(needle in blob for blob in self.acked[source])

    # -- a round trip --------------------------------------------------------------------

    def take(self) -> Batch:
        """Remove and return the pending acks of both streams and the queued moves."""
        batch = Batch()
        for source, ids in self.ids.items():
            if ids:
                taken = ids[:]
                batch.acks.append((source, taken, self._ack_call(source, taken), None))
                ids.clear()  # in place: the list object stays the stream's
        for source, (ids, keys) in self.done.items():
            if ids:
                batch.acks.append(self._done_call(source, ids[:], keys[:]))
                ids.clear()
                keys.clear()
        if self.outbox:
            batch.moves, self.outbox = self.outbox, []
        if batch:
            self.in_flight.append(batch)  # until settled or given back: see ``settling``
        return batch

    def commands(self, batch: Batch) -> list[Command]:
        """One ``ack`` script call (EVALSHA) per stream, then one call per move."""
        out: list[Command] = [call.command() for _, _, call, _ in batch.acks]
        out += [move.call.command() for move in batch.moves]
        return out

    def _ack_call(self, source: Source, ids: list[bytes]) -> Call[AckResult]:
        return calls.ack(stream=source.key, group=self.group, consumer=self.consumer,
                         delete=source.trusted, ids=ids)  # fmt: skip

    def _done_call(self, source: Source, ids: list[bytes], keys: list[str | bytes]) -> Acks:
        done, claims = self.idempotency_keys
        call = idem_calls.ack_done(stream=source.key, done=done, claims=claims, group=self.group,
                                   consumer=self.consumer, delete=source.trusted,
                                   ttl_ms=self.done_ttl_ms, ids=ids, keys=keys)  # fmt: skip
        return source, ids, call, keys

    def _queue_again(self, acks: Acks) -> None:
        """Queue the ids of an ack call whose outcome is unknown for the next round trip."""
        source, ids, _, keys = acks
        if keys is None:
            self.ids[source][:0] = ids
        else:
            done_ids, done_keys = self.done[source]
            done_ids[:0] = ids
            done_keys[:0] = keys

    def give_back(self, batch: Batch) -> None:
        """Return a batch whose outcome is unknown, to be sent again."""
        self._landed(batch)
        for acks in batch.acks:
            self._queue_again(acks)
        self.outbox[:0] = batch.moves

    async def settle(self, batch: Batch, results: list[Any]) -> None:
        """Count the outcome of each call; re-run calls that met NOSCRIPT."""
        try:
            await self._settle(batch, results)
        finally:
            self._landed(batch)  # anything unsettled is queued again by now

    async def flush(self) -> None:
        """Send all pending acks and moves now (one round trip)."""
        batch = self.take()
        if not batch:
            return
        try:
            results = await self.channel.roundtrip(self.commands(batch), ACK_DEADLINE)
        except BaseException:
            self.give_back(batch)
            raise
        await self.settle(batch, results)

    async def flush_loop(self) -> None:
        """Flush what the reader did not piggyback within ``linger`` seconds."""
        failures = 0
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            self.signalled = False
            await asyncio.sleep(self.linger)
            try:
                await self.flush()
                failures = 0
            except TRANSPORT_ERRORS as exc:
                failures += 1
                if failures & (failures - 1) == 0:  # 1st, 2nd, 4th…: an outage, not a flood
                    stream = self.sources[0].stream
                    log.warning(
                        "%s: ack flush failed %d times (%s); retrying", stream, failures, exc,
                        extra={"stream": stream},
                    )  # fmt: skip
                await asyncio.sleep(min(0.5, 0.05 * 2**failures))
                self._wanted.set()

    def _landed(self, batch: Batch) -> None:
        for i, sent in enumerate(self.in_flight):
            if sent is batch:
                del self.in_flight[i]
                return

    async def _settle(self, batch: Batch, results: list[Any]) -> None:
        n = len(batch.acks)
        for acks, sent in zip(batch.acks, results[:n], strict=True):
            source, ids, call, _ = acks
            reply = await self._rerun(call) if isinstance(sent, NoScriptError) else sent
            if isinstance(reply, Exception):
                log.error("ack of %d entries on %s failed: %s", len(ids), source.key, reply)
                self._queue_again(acks)
                continue
            self._count(source, ids, call.parse(reply))
        for move, sent in zip(batch.moves, results[n:], strict=True):
            reply = await self._rerun(move.call) if isinstance(sent, NoScriptError) else sent
            if isinstance(reply, Exception):
                if move.failed is not None and not is_nogroup(reply):
                    move.failed(reply)  # the entry's own fault: it settles otherwise
                    continue
                self.outbox.append(move)  # sent again next round trip
                await self.on_error_reply(reply)  # NOGROUP recreates the group, else raises
                continue
            move.done(move.call.parse(reply))

    async def _rerun(self, call: Call[Any]) -> Any:
        """The raw reply of ``call`` run alone (it met NOSCRIPT: loaded, then run)."""
        try:
            return await call.script(self.client, call.keys, call.args)  # type: ignore[arg-type]
        except ResponseError as exc:  # an error reply: handled like one in the round trip
            return exc

    def _count(self, source: Source, ids: list[bytes], result: AckResult) -> None:
        fenced, gone = result.fenced, result.gone
        self.remember(source, ids)
        if fenced:
            self.stats.fenced += len(fenced)
            log.warning(
                "fence: %d acks on %s rejected, the entries now belong to another consumer",
                len(fenced),
                source.key,
                extra={"stream": source.key, "decision": "fenced", "count": len(fenced)},
            )
        if gone:
            self.stats.stale_acks += len(gone)

    def remember(self, source: Source, ids: list[bytes]) -> None:
        """Keep ``ids`` (just acked) in the memory of recent acks, forgetting the oldest
        round trips' beyond :data:`ACKED_MEMORY` ids."""
        blobs = self.acked[source]
        blobs.append(b"\n" + b"\n".join(ids) + b"\n")
        count = self._acked_count[source] + len(ids)
        while count > ACKED_MEMORY and len(blobs) > 1:
            count -= blobs.popleft().count(b"\n") - 1
        self._acked_count[source] = count


__all__ = ["ACKED_MEMORY", "AckBatcher", "Batch", "Move"]
