"""Leases on held entries: renewed so that a long run is not reclaimed under it.

An entry stays pending under this consumer while it is buffered or running; once idle
past the visibility timeout another consumer may reclaim it. The lease loop renews
entries held longer than a third of that timeout (``XCLAIM … JUSTID`` in ``renew.lua``:
it resets the idle time, not the delivery counter). Entries the renewal reports lost now
belong to another consumer: they are dropped from the buffer, not run.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis

from redrive.runtime.buffer import Buffer
from redrive.runtime.source import Source
from redrive.store import calls
from redrive.store.channel import TRANSPORT_ERRORS

log = logging.getLogger("redrive.leases")


class Leases:
    """Renews the claim of this consumer on the entries its buffer holds."""

    def __init__(
        self, *, client: Redis, group: str, consumer: str, buffer: Buffer,
        visibility_timeout: float,
    ) -> None:  # fmt: skip
        self.client = client
        self.group = group
        self.consumer = consumer
        self.buffer = buffer
        self.third = visibility_timeout / 3

    async def renew(self, source: Source, *, also: bytes | None = None) -> set[bytes] | None:
        """Renew the entries of ``source`` held past a third of the visibility timeout
        (and ``also``); drop and return the ones now owned by another consumer.

        ``None``: Redis could not be asked (the fence still guards every outcome).
        """
        buffer = self.buffer
        old = buffer.held_before(source, time.perf_counter() - self.third)
        if also is not None and also not in old:
            old.append(also)
        if not old:
            return set()
        try:
            call = calls.renew(stream=source.key, group=self.group, consumer=self.consumer, ids=old)
            lost = await call(self.client)
        except TRANSPORT_ERRORS:
            return None
        buffer.renewed(source, old, time.perf_counter())
        gone = set(lost or ())
        if gone:
            dropped = buffer.drop(source, gone)
            log.warning(
                "lease lost on %d entries of %s (another consumer reclaimed them; %d not "
                "started, dropped)", len(gone), source.key, dropped,
            )  # fmt: skip
        return gone

    async def loop(self, sources: tuple[Source, ...]) -> None:
        """Renew every sixth of the visibility timeout, for good."""
        while True:
            await asyncio.sleep(self.third / 2)
            for source in sources:
                await self.renew(source)
