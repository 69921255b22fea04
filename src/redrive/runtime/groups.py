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
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from redrive.store.channel import TRANSPORT_ERRORS
from redrive.store.cluster import is_cluster

if TYPE_CHECKING:
    from redrive.runtime.consumer import Consumer

log = logging.getLogger("redrive.consumer")


def is_nogroup(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis saying the group (or its stream) does not exist."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


async def run_id(c: Consumer) -> str | None:
    """The server's ``run_id`` (changes at every restart), ``None`` if unknown.

    On a cluster, that of the master serving the stream's slot. (Not over the consumer's
    channels: each belongs to one task at a time.)
    """
    client: Any = c.client
    try:
        if is_cluster(client):
            node = client.get_node_from_key(c.main.key)
            info = await client.info("server", target_nodes=node)
        else:
            info = await client.info("server")
    except (ResponseError, *TRANSPORT_ERRORS):
        return None
    value = info.get("run_id") if isinstance(info, dict) else None
    return value.decode() if isinstance(value, bytes) else value


async def ensure(c: Consumer, *, warn: bool) -> None:
    """Create the group on both streams if missing (MKSTREAM) at the handler's start id."""
    recreated = []
    for source, start in ((c.main, c.spec.start_id), (c.retry, "0")):
        try:
            await c.client.xgroup_create(source.key, c.spec.group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            continue
        recreated.append(f"{source.key} at id {start}")
    if not (warn and recreated):
        return
    c.stats.groups_recreated += 1
    before, now = c.run_id, await run_id(c)
    c.run_id = now
    held = sum(len(s.held) for s in c.sources)
    wiped = (
        f"Redis restarted (run_id {before[:8]} -> {now[:8]}) without its data: what was not "
        f"read before is gone; {held} entries read before it are handled, their acks stale"
        if before and now and before != now
        else "the group was deleted"
    )
    log.warning(
        "group %s was missing on %s: recreated (%s)",
        c.spec.group,
        ", ".join(recreated),
        wiped,
        extra={"stream": c.main.key, "group": c.spec.group},
    )


async def on_error_reply(c: Consumer, exc: Exception) -> None:
    """Handle an error reply of a script or command: NOGROUP recreates, others raise."""
    if not is_nogroup(exc):
        raise exc
    await ensure(c, warn=True)


async def guarded(c: Consumer, loop: Callable[[Consumer], Awaitable[None]]) -> None:
    """Run a background loop; when it dies of NOGROUP, recreate the group and restart it."""
    while True:
        try:
            await loop(c)
            return
        except ResponseError as exc:
            if not is_nogroup(exc):
                raise
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await ensure(c, warn=True)
        await asyncio.sleep(0.05)
