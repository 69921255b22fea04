"""The buffer between the reader and the lanes: every entry read and not yet finished.

It owns the queue of entries to run, the crash-loop suspects (re-delivered entries that
run one at a time, see ``isolation``), the number of runs in flight, and when each held
entry was read or its lease last renewed. It is also the rendezvous of the two sides:
lanes park here until there is work (``idle_wait``) and are woken one at a time; the
reader waits here until there is room (``wait_room``), and a lane that finishes makes it.

No Redis, no clock of its own (times are passed in): tested alone with plain asyncio.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from redrive.runtime.source import Source

#: Fresh ids kept at most (far above what a consumer reads ahead; see ``Buffer.fresh``).
MAX_FRESH = 20_000

#: One buffered entry: its stream, its id, its flat fields (``None``: the payload is gone
#: from the stream, a loss to record) and what they weigh (``entry_bytes``, counted once).
Item = tuple[Source, bytes, list[bytes] | None, int]


#: Every live :class:`ReadBudget` of this process (a worker's own ``/metrics`` reads them).
BUDGETS: weakref.WeakSet[ReadBudget] = weakref.WeakSet()


def entry_bytes(fields: list[bytes] | None) -> int:
    """What an entry's fields weigh (names and values), as the read-ahead budget counts."""
    return sum(map(len, fields)) if fields else 0


class ReadBudget:
    """Bytes of entries read and not yet finished, across every handler of a process.

    Read-ahead is bounded by count per handler (``concurrency`` + ``prefetch``) and by
    this in bytes per process (``WorkerOptions.read_ahead_bytes``), as Kafka's
    ``fetch.max.bytes`` or NATS's ``MaxBytes``: with large messages the count alone would
    let memory follow message size. A reader reads only while the process is under its
    limit, and at least one entry, so a message larger than the limit still runs.
    ``limit=None``: no byte bound (the count still holds).
    """

    __slots__ = ("__weakref__", "_room", "limit", "used", "waiting", "waits")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0
        self.waits = 0  # how often a reader waited for the budget (a metric)
        self.waiting = 0  # readers waiting: a release must wake them
        self._room = asyncio.Event()
        BUDGETS.add(self)

    def take(self, n: int) -> None:
        self.used += n

    def give(self, n: int) -> None:
        self.used -= n
        if self.waiting:
            self.wake()

    def wake(self) -> None:
        """Wake the waiting readers if the process is under its limit now."""
        if self.limit is not None and self.used < self.limit:
            self._room.set()

    def left(self) -> int | None:
        """Bytes that may still be read (``None``: unbounded)."""
        return None if self.limit is None else self.limit - self.used

    async def wait(self) -> None:
        """Wait until the process is under its limit."""
        if self.limit is None:
            return
        while self.used >= self.limit:
            self.waits += 1
            self._room.clear()
            self.waiting += 1
            try:
                await self._room.wait()
            finally:
                self.waiting -= 1


class Buffer:
    """Entries between read and finish, and the wake-ups on both sides."""

    __slots__ = ("_idle", "_reader_waiting", "_room", "_waking", "budget", "fresh", "held",
                 "inflight", "last_bytes", "queue", "sealed", "suspects")  # fmt: skip

    def __init__(self, sources: Sequence[Source], budget: ReadBudget | None = None) -> None:
        #: The process's read-ahead budget in bytes (shared with the other handlers).
        self.budget = budget or ReadBudget(None)
        self.last_bytes = 0  # what the last read's entries weighed
        self.queue: deque[Item] = deque()
        self.suspects: deque[Item] = deque()
        #: Runs started and not finished (lanes count them: ``begin``/``finish``).
        self.inflight = 0
        #: Per stream: entry id -> when it was read or its lease renewed (perf_counter).
        self.held: dict[Source, dict[bytes, float]] = {s: {} for s in sources}
        #: Ids of new source-stream entries (read with ``>``) not yet run, when the handler's
        #: idempotency claims them implicitly (``Claims.implicit``); else ``None``. Any
        #: other way in (re-delivered, reclaimed) takes an id out: those claim in Redis.
        self.fresh: set[bytes] | None = None
        #: Nothing more will be added (shutdown): lanes return once the queue is empty.
        self.sealed = False
        self._idle: list[asyncio.Future[None]] = []
        self._waking = False
        self._room = asyncio.Event()
        self._reader_waiting = False

    # -- what the reader and recovery add -------------------------------------------------

    def add(self, source: Source, entries: Iterable[Any], now: float) -> int:
        """Queue the ``(id, fields)`` entries of one stream of a read; returns how many."""
        held = self.held[source]
        append = self.queue.append
        fresh = None if source.trusted else self.fresh
        if fresh is not None and len(fresh) > MAX_FRESH:
            fresh.clear()  # ids of entries that never ran here: they only lose the shortcut
        n = weight = 0
        for entry_id, flat in entries:
            held[entry_id] = now
            if fresh is not None:
                fresh.add(entry_id)
            size = sum(map(len, flat)) if flat else 0
            append((source, entry_id, flat, size))
            n += 1
            weight += size
        self.last_bytes = weight
        self.budget.take(weight)
        return n

    def add_recovered(
        self, source: Source, entry_id: bytes, fields: list[bytes], now: float, *, suspect: bool
    ) -> None:
        """Queue a re-delivered entry: a suspect waits for isolation; any other runs next
        (it is older than everything buffered, so it must not wait behind the backlog)."""
        self.held[source][entry_id] = now
        if self.fresh is not None:
            self.fresh.discard(entry_id)
        size = entry_bytes(fields)
        self.budget.take(size)
        if suspect:
            self.suspects.append((source, entry_id, fields, size))
        else:
            self.queue.appendleft((source, entry_id, fields, size))

    def holds(self, source: Source, entry_id: bytes) -> bool:
        """Whether ``entry_id`` is read and not finished in this process."""
        return entry_id in self.held[source]

    def size(self) -> int:
        """Entries buffered or running."""
        return len(self.queue) + len(self.suspects) + self.inflight

    def held_total(self) -> int:
        """Entries held across both streams (for messages)."""
        return sum(len(h) for h in self.held.values())

    # -- leases ---------------------------------------------------------------------------

    def held_before(self, source: Source, cutoff: float) -> list[bytes]:
        """Ids of ``source`` read (or renewed) before ``cutoff``: their lease needs renewing."""
        return [eid for eid, since in self.held[source].items() if since < cutoff]

    def renewed(self, source: Source, ids: Iterable[bytes], now: float) -> None:
        """Note a renewed lease on the ``ids`` still held."""
        held = self.held[source]
        for eid in ids:
            if eid in held:
                held[eid] = now

    def drop(self, source: Source, ids: set[bytes]) -> int:
        """Forget entries another consumer now owns; returns how many had not started.

        Running them would only repeat that consumer's work (and the fence would reject the
        outcome anyway). A run already going finishes; its outcome is fenced.
        """
        dropped = freed = 0
        for buffer in (self.queue, self.suspects):
            kept = []
            for item in buffer:
                if item[0] is source and item[1] in ids:
                    freed += item[3]
                else:
                    kept.append(item)
            dropped += len(buffer) - len(kept)
            buffer.clear()  # in place: the lanes hold references to these deques
            buffer.extend(kept)
        self.budget.give(freed)
        held = self.held[source]
        for entry_id in ids:
            held.pop(entry_id, None)
        if self.fresh is not None and not source.trusted:
            self.fresh.difference_update(ids)
        return dropped

    # -- the lanes' side ------------------------------------------------------------------

    def settled(self, source: Source, entry_id: bytes, size: int) -> None:
        """An entry taken from the queue was settled without a run (isolation's limit)."""
        self.held[source].pop(entry_id, None)
        if self.fresh is not None:
            self.fresh.discard(entry_id)
        self.budget.give(size)

    def begin(self) -> None:
        """A lane took an entry and runs it."""
        self.inflight += 1

    def finish(self, source: Source, entry_id: bytes, size: int) -> None:
        """A run ended (its outcome is with the ack batcher or the settler): make room;
        ``size`` is the entry's weight (its item's last element)."""
        self.inflight -= 1
        self.held[source].pop(entry_id, None)
        budget = self.budget  # its give(), inlined: this runs for every message
        budget.used -= size
        if budget.waiting:
            budget.wake()
        if self._reader_waiting:
            self._room.set()

    def park(self) -> None:
        """A run ended without an outcome and its entry waits to run again (its
        idempotency key is claimed elsewhere): the entry stays held (its lease renewed,
        never re-read as a stranger's) and keeps its weight; only the run is over."""
        self.inflight -= 1
        if self._reader_waiting:
            self._room.set()

    def unpark(self, item: Item) -> None:
        """Run a parked entry next (it is older than what is buffered)."""
        if self.sealed:  # shutdown: it stays pending under this consumer, re-read at start
            self.settled(item[0], item[1], item[3])
            return
        self.queue.appendleft(item)
        self.wake()

    def wake(self) -> None:
        """Wake one idle lane unless one is already on its way (it wakes the next)."""
        if self._waking or not self._idle:
            return
        self._waking = True
        self._idle.pop().set_result(None)

    def wake_all(self) -> None:
        """Wake every idle lane (shutdown: they drain the queue and return)."""
        while self._idle:
            fut = self._idle.pop()
            if not fut.done():
                fut.set_result(None)

    async def idle_wait(self) -> None:
        """Park a lane until there is work (or shutdown)."""
        fut = asyncio.get_running_loop().create_future()
        self._idle.append(fut)
        await fut
        self._waking = False

    def make_room(self) -> None:
        """Let a waiting reader look again now (a lane on a long streak yields to it)."""
        self._room.set()

    # -- the reader's side ----------------------------------------------------------------

    async def wait_room(self, low_water: int) -> int:
        """Wait until at most ``low_water`` entries are buffered or running; return that size."""
        while True:
            size = self.size()
            if size <= low_water or self.sealed:
                return size
            self._room.clear()
            self._reader_waiting = True
            try:
                await self._room.wait()
            finally:
                self._reader_waiting = False

    def seal(self) -> None:
        """Shutdown: nothing more will be added; idle lanes return, a waiting reader wakes."""
        self.sealed = True
        self._room.set()
        self.wake_all()


__all__ = ["Buffer", "Item", "ReadBudget", "entry_bytes"]
