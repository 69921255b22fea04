"""Canary replays: watch the first K replayed messages until each is settled.

A canary is *settled* when it is no longer in flight anywhere its consumers keep work, and
then either *dead again* (a new dead letter with its origin id appeared after the replay
began) or *succeeded*. In flight means, for the default target ``retry:{S}:G``: an entry
of that retry stream or a member of its schedule carries the origin id. Both are read in
one MULTI/EXEC, so a retry moving between them (atomically, by a Lua script) is never
missed. For a ``--to T`` target: some group of ``T`` has not yet delivered it, still has
it pending, or holds it in its own retry keys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis

from redrive.core.ids import exclusive, id_key
from redrive.core.text import text
from redrive.dlq.model import command, pairs_of
from redrive.store import keys
from redrive.store.schedule import member_fields
from redrive.verify.places import origin_of, retrying_origins, written_by

POLL_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Canary:
    """One replayed message to watch.

    ``stream``/``group`` say which consumers handle it: the entry's own group on ``S`` for
    the default target, every group of ``T`` (``group=""``) for ``--to T``. ``origin`` is
    the id its new dead letter would carry.
    """

    dlq_id: str
    stream: str
    group: str
    target_id: str
    origin: str


@dataclass(slots=True)
class CanaryResult:
    """How the canaries ended: ids of the dead letters they were replayed from."""

    succeeded: list[str] = field(default_factory=list)
    died: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every canary succeeded."""
        return not self.died and not self.unsettled


async def last_id(client: Redis, key: str) -> str:
    """The newest id of ``key`` (``0-0`` when empty): dead letters after it are new."""
    reply = await command(client, "XREVRANGE", key, "+", "-", "COUNT", 1)
    return text(reply[0][0]) if reply else "0-0"


async def watch(
    client: Redis, canaries: Sequence[Canary], marks: dict[str, str], timeout: float
) -> CanaryResult:
    """Poll until every canary is settled or ``timeout`` seconds pass.

    ``marks`` maps each source stream to :func:`last_id` of its DLQ before the replay.
    """
    result = CanaryResult()
    waiting = list(canaries)
    deadline = time.monotonic() + timeout
    while waiting:
        still: list[Canary] = []
        for canary in waiting:
            # In flight first, dead second: a worker dead-letters a retry in one step
            # (out of the retry stream, into the DLQ), so one that is no longer in flight
            # is already in the DLQ if it died. The other order read "not dead yet", then
            # "not in flight": a canary that died in between counted as a success.
            if await _in_flight(client, canary):
                still.append(canary)
            elif await _died(client, canary, marks.get(canary.stream, "0-0")):
                result.died.append(canary.dlq_id)
            else:
                result.succeeded.append(canary.dlq_id)
        waiting = still
        if waiting and time.monotonic() >= deadline:
            result.unsettled = [c.dlq_id for c in waiting]
            break
        if waiting:
            await asyncio.sleep(POLL_SECONDS)
    return result


async def _died(client: Redis, canary: Canary, mark: str) -> bool:
    reply = await command(client, "XRANGE", keys.dlq(canary.stream), exclusive(mark), "+")
    group = canary.group or None  # "": a --to target, whose every group counts
    for _, raw in reply:
        fields = dict(pairs_of(raw))
        if origin_of(fields) == canary.origin and written_by(fields, None, group):
            return True
    return False


async def _in_flight(client: Redis, canary: Canary) -> bool:
    if canary.group:
        return await _in_retry_keys(client, canary.stream, canary.group, canary.origin)
    groups = await client.xinfo_groups(canary.stream)
    for info in groups:
        group = text(info["name"])
        if id_key(info["last-delivered-id"]) < id_key(canary.target_id):
            return True
        pending = await client.xpending_range(
            canary.stream, group, min=canary.target_id, max=canary.target_id, count=1
        )
        if pending or await _in_retry_keys(client, canary.stream, group, canary.origin):
            return True
    return not groups  # nobody reads the target: it cannot settle


async def _in_retry_keys(client: Redis, stream: str, group: str, origin: str) -> bool:
    async with client.pipeline(transaction=True) as pipe:
        cast(Any, pipe).execute_command("XRANGE", keys.retry_stream(stream, group), "-", "+")
        pipe.zrange(keys.retry_due(stream, group), 0, -1)
        entries, scheduled = await pipe.execute()
    retries = (dict(pairs_of(raw)) for _, raw in entries)
    return origin in retrying_origins(retries, (member_fields(m) for m in scheduled))
