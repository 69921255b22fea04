"""Newest-first pages of dead letters across every DLQ, each page with a bounded cost.

``redrive dlq list`` pages stream by stream in id order (oldest first); a console shows
the newest first across all streams. The order is (entry id, stream) descending, and a
cursor is the ``STREAM@ID`` of the last entry a page *looked at*: the next page reads
each DLQ with ``XREVRANGE`` from there, so a page costs the same at the top of 1M dead
letters as deep inside them (nothing above the cursor is read or counted again).

A filter is applied while reading, so a rare one may read many entries to fill a page.
A page therefore stops after ``budget`` entries read even when it found fewer than
``limit``, and says so (``partial``): a rare filter costs several quick pages instead of
one that holds the console (and Redis) for seconds.

Example::

    page = await newest(client, Filter(reason="poison"), limit=50)
    older = await newest(client, Filter(reason="poison"), cursor=page.cursor)
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from redis.asyncio import Redis

from redrive.core.ids import id_key
from redrive.core.text import text
from redrive.dlq.model import DeadLetter, command, pairs_of, split_ref
from redrive.dlq.query import Filter, OnSkip, by_ids, resolve_streams
from redrive.errors import ConfigError
from redrive.store import keys

#: Entries a page reads at most (a filter that matches little stops here).
BUDGET = 2_000
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class NewestPage:
    """One page, newest first. ``cursor`` resumes after the last entry looked at
    (``None``: nothing older is left); ``partial``: the page stopped at its budget with
    fewer than ``limit`` matches, and older matches may follow."""

    entries: list[DeadLetter]
    cursor: str | None
    scanned: int
    partial: bool


def _order(entry: DeadLetter) -> tuple[tuple[int, int], str]:
    return id_key(entry.id), entry.stream


def _parse_cursor(cursor: str) -> tuple[str, str]:
    stream, entry_id = split_ref(cursor, "cursor")
    if stream is None:
        raise ConfigError(f"cursor {cursor!r} is malformed: pass the cursor a page returned")
    return stream, entry_id


async def _descending(
    client: Redis, stream: str, end: str, chunk: int
) -> AsyncGenerator[DeadLetter, None]:
    """Entries of ``dlq:{stream}`` from ``end`` (an id, ``(id`` or ``+``) down, newest first."""
    key = keys.dlq(stream)
    while True:
        reply = await command(client, "XREVRANGE", key, end, "-", "COUNT", chunk)
        for entry_id, raw in reply:
            yield DeadLetter(stream, key, text(entry_id), pairs_of(raw))
        if len(reply) < chunk:
            return
        end = "(" + text(reply[-1][0])  # exclusive ranges: Redis >= 6.2
        chunk = _CHUNK


def _start(stream: str, after: tuple[str, str] | None) -> str:
    """Where ``stream``'s read begins for a page resuming after ``after``."""
    if after is None:
        return "+"
    at_stream, at_id = after
    # Equal ids order by stream, descending: a smaller stream's entry with the cursor's
    # id comes after the cursor, so it is read again (inclusive); the others are not.
    return at_id if stream < at_stream else "(" + at_id


async def newest(
    client: Redis,
    flt: Filter,
    *,
    limit: int = 50,
    cursor: str | None = None,
    budget: int = BUDGET,
    on_skip: OnSkip | None = None,
) -> NewestPage:
    """Up to ``limit`` dead letters matching ``flt``, newest first, after ``cursor``."""
    if limit < 1 or budget < limit:
        raise ConfigError(f"limit={limit}, budget={budget}: use 1 <= limit <= budget")
    after = _parse_cursor(cursor) if cursor else None
    if flt.refs:
        return _from_ids(await by_ids(client, flt, on_skip=on_skip), limit, after)
    streams = await _below(client, await resolve_streams(client, flt.streams, on_skip), after)
    chunk = min(limit + 1, _CHUNK)
    readers = {s: _descending(client, s, _start(s, after), chunk) for s in streams}
    heads = {s: e for s, r in readers.items() if (e := await anext(r, None)) is not None}
    out: list[DeadLetter] = []
    scanned, last = 0, None
    while heads and len(out) < limit and scanned < budget:
        stream = max(heads, key=lambda s: _order(heads[s]))
        last = heads[stream]
        scanned += 1
        if flt.matches(last):
            out.append(last)
        following = await anext(readers[stream], None)
        if following is None:
            del heads[stream]
        else:
            heads[stream] = following
    for reader in readers.values():
        await reader.aclose()
    more = bool(heads) and last is not None
    return NewestPage(out, last.ref if more and last else None, scanned, more and len(out) < limit)


async def _below(client: Redis, streams: list[str], after: tuple[str, str] | None) -> list[str]:
    """The ``streams`` that hold an entry after the cursor ``after`` (all, without one).

    Measured: ``XREVRANGE`` from an id older than a stream's every entry walks the whole
    stream (100 ms at 250k entries) to return nothing, so such streams are not read.
    """
    if after is None:
        return streams
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        pipe.execute_command("XRANGE", keys.dlq(stream), "-", "+", "COUNT", 1)
    mark = (id_key(after[1]), after[0])
    return [
        stream
        for stream, oldest in zip(streams, await pipe.execute(), strict=True)
        if oldest and (id_key(oldest[0][0]), stream) < mark
    ]


def _from_ids(found: list[DeadLetter], limit: int, after: tuple[str, str] | None) -> NewestPage:
    ordered = sorted(found, key=_order, reverse=True)
    if after is not None:
        mark = (id_key(after[1]), after[0])
        ordered = [e for e in ordered if _order(e) < mark]
    page = ordered[:limit]
    more = len(ordered) > limit
    return NewestPage(page, page[-1].ref if more else None, len(page), False)
