"""Isolation of crash-loop suspects: re-delivered entries that run one at a time.

An entry re-delivered a second time (see ``recovery``) may be the message that kills the
worker. It runs alone, with nothing else in flight, so if it kills the worker again no
other entry's run is blamed. Each isolated run is counted first in the group's ``starts``
hash (HINCRBY, which survives the crash); at the limit the entry is dead-lettered with
``max_deliveries_exceeded`` instead of run.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis

from redrive.runtime.buffer import Buffer, Item
from redrive.runtime.moves import Settler
from redrive.runtime.recovery import SHARED_RUNS
from redrive.runtime.source import Source
from redrive.store.channel import TRANSPORT_ERRORS

ISOLATION_POLL = 0.005
STARTS_TTL = 7 * 24 * 3600


class Isolation:
    """Which suspect runs now (``busy``, ``entry``), and the count of its isolated runs."""

    __slots__ = ("buffer", "busy", "client", "entry", "max_deliveries", "settler", "starts_key")

    def __init__(
        self, *, client: Redis, starts_key: str, buffer: Buffer, settler: Settler,
        max_deliveries: int,
    ) -> None:  # fmt: skip
        self.client = client
        self.starts_key = starts_key
        self.buffer = buffer
        self.settler = settler
        self.max_deliveries = max_deliveries
        self.busy = False
        self.entry: bytes | None = None

    async def next(self) -> Item | None:
        """Take the next suspect once nothing else is in flight, or ``None`` to look again."""
        buffer = self.buffer
        if self.busy or buffer.inflight:
            await asyncio.sleep(ISOLATION_POLL)
            return None
        source, entry_id, fields, size = item = buffer.suspects.popleft()
        # Claim isolation before the first await, or another lane could start one too.
        self.busy = True
        self.entry = entry_id
        try:
            runs = await self._count_start(source, entry_id)
        except TRANSPORT_ERRORS:
            buffer.suspects.appendleft(item)
            self.busy = False
            self.entry = None
            await asyncio.sleep(ISOLATION_POLL * 10)
            return None
        # Runs before this one: the shared (uncounted) ones plus the isolated ones counted.
        if SHARED_RUNS + runs - 1 >= self.max_deliveries and fields is not None:
            buffer.settled(source, entry_id, size)
            self.settler.exceeded(source, entry_id, fields, runs)
            await self.done(source, entry_id)
            return None
        return item

    async def _count_start(self, source: Source, entry_id: bytes) -> int:
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(self.starts_key, source.tag + entry_id, 1)
        pipe.expire(self.starts_key, STARTS_TTL)
        runs, _ = await pipe.execute()
        return int(runs)

    async def done(self, source: Source, entry_id: bytes) -> None:
        """The suspect settled (or was dead-lettered): forget its runs, let the next go."""
        self.busy = False
        self.entry = None
        # On failure the hash simply expires; a stale count matters only if it crashes again.
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await self.client.hdel(self.starts_key, source.tag + entry_id)
        self.buffer.wake()
