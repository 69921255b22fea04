"""Purge (delete) dead letters by id, filter or age, with an audit record.

The selection is made first and its exact ids are what gets deleted, so the count an
operator confirmed is the count removed (entries that arrive meanwhile are untouched).
Each batch is deleted by ``purge.lua`` together with its per-entry audit record.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from redis.asyncio import Redis

from redrive.dlq import audit
from redrive.dlq.model import DeadLetter
from redrive.dlq.query import Filter, OnSkip, select
from redrive.errors import ConfigError
from redrive.store import calls, keys

BATCH = 500


@dataclass(slots=True)
class PurgePlan:
    """The exact entries a purge will delete, by DLQ."""

    entries: list[DeadLetter] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many entries will be deleted."""
        return len(self.entries)

    def by_stream(self) -> dict[str, int]:
        """How many per source stream."""
        return dict(sorted(Counter(e.stream for e in self.entries).items()))


async def plan_purge(
    client: Redis, flt: Filter, *, everything: bool = False, on_skip: OnSkip | None = None
) -> PurgePlan:
    """Select what to delete; refuses an unfiltered purge unless ``everything``.

    ``older_than`` is expressed as ``flt.until_ms`` (entries that died before it). A DLQ
    of the index that is not a stream is left alone, and ``on_skip`` told.
    """
    if flt.is_empty and not everything:
        raise ConfigError("say what to purge: --id, a filter, --older-than or --all")
    chosen = PurgePlan()
    # An --id in no DLQ, or in two, raises here; so does a named DLQ that is not a stream.
    async for entry in select(client, flt, on_skip=on_skip):
        chosen.entries.append(entry)
    await audit.require_trails(client, list(chosen.by_stream()))  # refused before "Delete?"
    return chosen


async def purge(
    client: Redis, chosen: PurgePlan, *, by: str | None = None, note: str = "", what: str = ""
) -> int:
    """Delete the planned entries; returns how many were deleted (already gone: skipped).

    Example::

        chosen = await plan_purge(client, Filter(reason="poison", until_ms=cutoff))
        if input(f"delete {chosen.count}? ") == "y":
            await purge(client, chosen)
    """
    await audit.require_trails(client, list(chosen.by_stream()))
    op = audit.Operation.start("purge", by=by, note=note)
    deleted = 0
    try:
        for stream, ids in _batches(chosen):
            deleted += await delete_batch(client, op, stream, ids)
    finally:
        await audit.record(
            client, op, count=deleted, streams=list(chosen.by_stream()), details={"filter": what}
        )
    return deleted


async def delete_batch(client: Redis, op: audit.Operation, stream: str, ids: list[str]) -> int:
    """Delete ``ids`` of ``dlq:{stream}`` with their audit record (``purge.lua``, one
    call); returns how many were deleted (ids already gone are not counted)."""
    head = [*op.entry_fields(), "stream", stream]
    call = calls.purge(dlq=keys.dlq(stream), audit=keys.audit_trail(stream), record=head, ids=ids)
    return await call(client)


def _batches(chosen: PurgePlan) -> list[tuple[str, list[str]]]:
    by_stream: dict[str, list[str]] = {}
    for entry in chosen.entries:
        by_stream.setdefault(entry.stream, []).append(entry.id)
    out = []
    for stream, ids in by_stream.items():
        out += [(stream, ids[i : i + BATCH]) for i in range(0, len(ids), BATCH)]
    return out
