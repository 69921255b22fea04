"""Consumer groups that survive a Redis restart without persistence (NOGROUP).

After such a restart the streams, the groups and the retry schedule are gone. Every call
site that names the group (read, reclaim, ack and move scripts, lease renewal) may then
meet ``NOGROUP``: the group is recreated at the handler's ``start_id`` (the backlog,
never silently at ``$``), with a WARNING that says what the restart wiped, and the loop
carries on. A loop that met it is restarted rather than left dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from redrive.core.text import text
from redrive.runtime.buffer import Buffer
from redrive.runtime.source import Source
from redrive.runtime.stats import Stats
from redrive.store.channel import TRANSPORT_ERRORS
from redrive.store.cluster import is_cluster

log = logging.getLogger("redrive.consumer")


def is_nogroup(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis saying the group (or its stream) does not exist."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


class Groups:
    """The consumer group on the source stream and its retry stream, kept in existence.

    Owns the server's last known ``run_id``, which tells a restart from a deleted group.
    """

    def __init__(
        self,
        *,
        client: Redis,
        group: str,
        start_id: str,
        main: Source,
        retry: Source,
        stats: Stats,
        buffer: Buffer,
    ) -> None:
        self.client = client
        self.group = group
        self.start_id = start_id
        self.main = main
        self.retry = retry
        self.stats = stats
        self.buffer = buffer
        self.run_id: str | None = None

    async def start(self) -> None:
        """Note the server's run id, then create the groups if missing (no warning)."""
        self.run_id = await self.server_run_id()
        await self.ensure(warn=False)

    async def server_run_id(self) -> str | None:
        """The server's ``run_id`` (changes at every restart), ``None`` if unknown.

        On a cluster, that of the master serving the stream's slot. (Not over the
        consumer's channels: each belongs to one task at a time.)
        """
        client: Any = self.client
        try:
            if is_cluster(client):
                node = client.get_node_from_key(self.main.key)
                info = await client.info("server", target_nodes=node)
            else:
                info = await client.info("server")
        except (ResponseError, *TRANSPORT_ERRORS):
            return None
        value = info.get("run_id") if isinstance(info, dict) else None
        return None if value is None else text(value)

    async def ensure(self, *, warn: bool) -> None:
        """Create the group on both streams if missing (MKSTREAM) at the handler's start id."""
        recreated = []
        for source, start in ((self.main, self.start_id), (self.retry, "0")):
            try:
                await self.client.xgroup_create(source.key, self.group, id=start, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
                continue
            recreated.append(f"{source.key} at id {start}")
        if warn and recreated:
            await self._warn_recreated(recreated)

    async def _warn_recreated(self, recreated: list[str]) -> None:
        self.stats.groups_recreated += 1
        before, now = self.run_id, await self.server_run_id()
        self.run_id = now
        held = self.buffer.held_total()
        wiped = (
            f"Redis restarted (run_id {before[:8]} -> {now[:8]}) without its data: what was "
            f"not read before is gone; {held} entries read before it are handled, their acks "
            "stale"
            if before and now and before != now
            else "the group was deleted"
        )
        log.warning(
            "group %s was missing on %s: recreated (%s)",
            self.group,
            ", ".join(recreated),
            wiped,
            extra={"stream": self.main.key, "group": self.group},
        )

    async def on_error_reply(self, exc: Exception) -> None:
        """Handle an error reply of a script or command: NOGROUP recreates, others raise."""
        if not is_nogroup(exc):
            raise exc
        await self.ensure(warn=True)

    async def guarded(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a loop; when it dies of NOGROUP, recreate the group and restart it."""
        while True:
            try:
                await loop()
                return
            except ResponseError as exc:
                if not is_nogroup(exc):
                    raise
            with contextlib.suppress(*TRANSPORT_ERRORS):
                await self.ensure(warn=True)
            await asyncio.sleep(0.05)
