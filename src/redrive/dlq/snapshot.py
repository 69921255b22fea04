"""Snapshots: a filter resolved *now* to the exact dead letters it selects.

A bulk action in the dashboard shows a preview (the exact count and a sample) and then
acts on what was previewed, never on what the filter would select later: an entry that
died after the preview is never swept in (Sidekiq's "Retry All" did sweep such entries).
:func:`take` pages through the selection (``select``, 500 entries a read) and appends
each ``STREAM@ID`` to a Redis list in chunks, so a million dead letters never hold Redis
for more than one short command; the list and its summary hash expire after ``ttl``
seconds unless a job binds them (:mod:`redrive.dlq.jobs`).

Example::

    preview = await take(client, Filter(streams=("ecommerce:orders",), reason="poison"))
    print(preview.count, [e.ref for e in preview.sample])
    job = await jobs.submit(client, jobs.JobSpec("replay", preview.id))
"""

from __future__ import annotations

import heapq
import json
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from redrive.core.ids import IdKey, id_key
from redrive.core.text import text
from redrive.dlq.model import DeadLetter
from redrive.dlq.query import Filter, OnSkip, select
from redrive.errors import ConfigError
from redrive.store import keys

#: Refs appended per RPUSH while a snapshot is taken.
CHUNK = 1000
DEFAULT_TTL = 3600
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
__all__ = ["Preview", "UnknownSnapshotError", "load", "refs", "take"]


class UnknownSnapshotError(ConfigError):
    """A snapshot id that expired or never existed: take a new preview."""


@dataclass(frozen=True, slots=True)
class Preview:
    """What a snapshot binds: its id, the exact count, a sample and the filter asked.

    ``sample`` holds the newest ``sample`` entries of the selection (by entry id across
    streams), newest first, as they were when the snapshot was taken.
    """

    id: str
    count: int
    sample: tuple[DeadLetter, ...]
    by_stream: dict[str, int]
    filter: str
    created_ms: int


class _Newest:
    """The ``size`` newest entries seen (a bounded min-heap on the entry id)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.heap: list[tuple[IdKey, str, DeadLetter]] = []

    def add(self, entry: DeadLetter) -> None:
        item = (id_key(entry.id), entry.stream, entry)
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, item)
        elif self.size and item[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, item)

    def newest_first(self) -> tuple[DeadLetter, ...]:
        return tuple(e for *_, e in sorted(self.heap, key=lambda i: i[:2], reverse=True))


async def take(
    client: Redis,
    flt: Filter,
    *,
    sample: int = 5,
    ttl: int = DEFAULT_TTL,
    on_skip: OnSkip | None = None,
) -> Preview:
    """Resolve ``flt`` now and store the exact refs it selects; returns the preview.

    The refs are kept in the order :func:`~redrive.dlq.query.select` yields them (stream
    by stream, oldest first), the order a job works through them. Raises what ``select``
    raises (an unknown stream or id, a DLQ of the wrong type), before anything is stored.
    """
    if sample < 0 or ttl < 1:
        raise ConfigError(f"sample={sample}, ttl={ttl}: use sample >= 0 and ttl >= 1 s")
    snapshot_id = secrets.token_urlsafe(12)
    refs_key = keys.snapshot_refs(snapshot_id)
    count, by_stream, newest = 0, Counter[str](), _Newest(sample)
    chunk: list[str] = []
    try:
        async for entry in select(client, flt, on_skip=on_skip):
            count += 1
            by_stream[entry.stream] += 1
            newest.add(entry)
            chunk.append(entry.ref)
            if len(chunk) >= CHUNK:
                await _push(client, refs_key, chunk, ttl)
                chunk = []
        await _push(client, refs_key, chunk, ttl)
        streams = dict(sorted(by_stream.items()))
        preview = Preview(snapshot_id, count, newest.newest_first(), streams, flt.describe(),
                          int(time.time() * 1000))  # fmt: skip
        await _save(client, preview, ttl)
    except BaseException:
        await client.delete(refs_key)  # a half-taken snapshot must not be found later
        raise
    return preview


async def _push(client: Redis, key: str, chunk: list[str], ttl: int) -> None:
    if not chunk:
        return
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, *chunk)
    pipe.expire(key, ttl)
    await pipe.execute()


async def _save(client: Redis, preview: Preview, ttl: int) -> None:
    fields = {
        "count": str(preview.count),
        "filter": preview.filter,
        "created_ms": str(preview.created_ms),
        "by_stream": json.dumps(preview.by_stream),
        "sample": json.dumps([_entry_json(e) for e in preview.sample]),
    }
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.snapshot(preview.id), mapping=fields)  # type: ignore[arg-type]
    pipe.expire(keys.snapshot(preview.id), ttl)
    pipe.expire(keys.snapshot_refs(preview.id), ttl)
    await pipe.execute()


def _entry_json(entry: DeadLetter) -> list[Any]:
    # latin-1 maps every byte to one code point: raw payloads survive the round trip.
    pairs = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in entry.pairs]
    return [entry.stream, entry.key, entry.id, pairs]


def _entry_of(item: list[Any]) -> DeadLetter:
    stream, key, entry_id, pairs = item
    raw = tuple((n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs)
    return DeadLetter(stream, key, entry_id, raw)


def check_id(snapshot_id: str) -> str:
    """``snapshot_id`` if it has the shape of one (else :class:`UnknownSnapshotError`)."""
    if not _ID.match(snapshot_id):
        raise UnknownSnapshotError(f"snapshot {snapshot_id[:80]!r} is not a snapshot id")
    return snapshot_id


async def load(client: Redis, snapshot_id: str) -> Preview:
    """The preview of a snapshot taken earlier (:class:`UnknownSnapshotError` if it
    expired or never existed)."""
    raw = await client.hgetall(keys.snapshot(check_id(snapshot_id)))
    if not raw:
        raise UnknownSnapshotError(
            f"snapshot {snapshot_id} has expired or never existed: take a new preview"
        )
    got = {text(k): text(v) for k, v in raw.items()}
    sample = tuple(_entry_of(i) for i in json.loads(got.get("sample", "[]")))
    by_stream = {str(k): int(v) for k, v in json.loads(got.get("by_stream", "{}")).items()}
    return Preview(snapshot_id, int(got["count"]), sample, by_stream, got.get("filter", ""),
                   int(got.get("created_ms", "0")))  # fmt: skip


async def refs(client: Redis, snapshot_id: str, start: int = 0, stop: int = -1) -> list[str]:
    """The ``STREAM@ID`` refs a snapshot binds, in bound order (``start``/``stop``:
    an inclusive index range, as LRANGE, for reading a large one page by page)."""
    key = keys.snapshot(check_id(snapshot_id))
    pipe = client.pipeline(transaction=True)
    pipe.exists(key)
    pipe.lrange(keys.snapshot_refs(snapshot_id), start, stop)
    found, items = await pipe.execute()
    if not found:
        raise UnknownSnapshotError(
            f"snapshot {snapshot_id} has expired or never existed: take a new preview"
        )
    return [text(i) for i in items]
