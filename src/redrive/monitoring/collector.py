"""Collect a :class:`Snapshot` of every stream redrive knows, without disturbing workers.

Only read commands: ``SMEMBERS redrive:streams`` (the index workers keep; no ``KEYS``),
``XLEN``, ``XINFO GROUPS``/``CONSUMERS``, ``XPENDING`` (summary, and the oldest entry),
``ZCARD``/``ZRANGE`` of the retry schedule, ``HGETALL`` of the stats hash and ``XRANGE``
of the per-second metrics stream. Nothing is claimed, acked or created, and the consumer
idle times are not reset (XINFO does not touch a consumer). Two pipelined round trips
per stream.

Example::

    snapshot = collect(sync_client(url), window=60, dead_after=60)
    for group in snapshot.groups():
        print(group.stream, group.group, group.lag, group.pending)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from redrive.core.text import text
from redrive.monitoring.model import ConsumerInfo, GroupSnapshot, Snapshot, StreamSnapshot
from redrive.monitoring.window import summarize, window_start
from redrive.store import keys
from redrive.store.connection import permission_hint


@dataclass(frozen=True, slots=True)
class CollectOptions:
    """``window``: seconds of per-second metrics to sum; ``dead_after``: seconds a
    consumer with entries pending may stay idle before it counts as dead."""

    window: float = 60.0
    dead_after: float = 60.0


def indexed_streams(client: redis.Redis) -> list[str]:
    """Source streams that have had a worker (the ``redrive:streams`` set), sorted."""
    return sorted(text(s) for s in client.smembers(keys.STREAMS_INDEX))


def collect(
    client: redis.Redis,
    streams: Iterable[str] | None = None,
    *,
    window: float = 60.0,
    dead_after: float = 60.0,
) -> Snapshot:
    """Snapshot ``streams`` (default: every indexed stream) over a ``window`` of seconds."""
    opts = CollectOptions(window, dead_after)
    names = indexed_streams(client) if streams is None else list(streams)
    now_ms = int(time.time() * 1000)
    taken = tuple(_stream(client, name, now_ms, opts) for name in names)
    return Snapshot(now_ms, window, taken)


def _stream(client: redis.Redis, stream: str, now_ms: int, opts: CollectOptions) -> StreamSnapshot:
    pipe = client.pipeline(transaction=False)
    pipe.exists(stream)
    pipe.xlen(stream)
    pipe.xlen(keys.dlq(stream))
    pipe.xinfo_groups(stream)
    exists, length, dlq_length, infos = pipe.execute(raise_on_error=False)
    problem = _unreadable(stream, exists, length, dlq_length)
    if problem is not None:
        return StreamSnapshot(stream, None, 0, 0.0, (), problem=problem)
    if isinstance(infos, Exception):
        infos = []  # the stream does not exist (yet): no groups
    groups = tuple(
        _group(client, stream, info, now_ms, opts)
        for info in sorted(infos, key=lambda i: text(i["name"]))
    )
    dead = sum(g.window.totals.get("dead", 0) for g in groups)
    return StreamSnapshot(
        stream=stream,
        length=int(length) if exists else None,
        dlq_length=int(dlq_length),
        dlq_growth_per_minute=dead * 60 / opts.window if opts.window else 0.0,
        groups=groups,
    )


def _group(
    client: redis.Redis, stream: str, info: dict[str, Any], now_ms: int, opts: CollectOptions
) -> GroupSnapshot:
    group = text(info["name"])
    k = keys.StreamKeys.of(stream, group)
    pipe = client.pipeline(transaction=False)
    for key in (stream, k.retry):
        pipe.xpending(key, group)
        pipe.xpending_range(key, group, "-", "+", 1)  # the oldest pending entry
        pipe.xinfo_consumers(key, group)
    pipe.zcard(k.due)
    pipe.zrange(k.due, 0, 0, withscores=True)
    pipe.xlen(k.retry)
    pipe.hgetall(k.stats)
    pipe.xrange(keys.metrics(stream, group), min=window_start(now_ms, opts.window))
    pipe.zcard(keys.idempotency_done(stream, group))
    replies = [None if isinstance(r, Exception) else r for r in pipe.execute(raise_on_error=False)]
    main, retry = replies[0:3], replies[3:6]
    zcard, first_due, ready, counters, entries, marks = replies[6:12]
    window = summarize(entries or [], now_ms, opts.window)
    return GroupSnapshot(
        stream=stream,
        group=group,
        lag=_lag(info),
        pending=_pending(main[0]) + _pending(retry[0]),
        oldest_pending_idle_ms=_oldest(main[1], retry[1]),
        consumers=_consumers(main[2], retry[2], window.breakers, opts.dead_after),
        retry_scheduled=int(zcard or 0),
        retry_next_due_ms=int(first_due[0][1]) if first_due else None,
        retry_ready=int(ready or 0),
        counters={text(f): int(v) for f, v in (counters or {}).items()},
        window=window,
        idempotency_keys=int(marks or 0),
    )


def _unreadable(stream: str, exists: Any, length: Any, dlq_length: Any) -> str | None:
    """Why ``stream`` (an index entry) cannot be read, or None if it can."""
    for key, reply in ((stream, exists), (stream, length), (keys.dlq(stream), dlq_length)):
        if not isinstance(reply, Exception):
            continue
        if "WRONGTYPE" in str(reply):
            return (
                f"{keys.STREAMS_INDEX} lists {stream!r} but {key!r} is not a stream: skipped "
                f"(SREM {keys.STREAMS_INDEX} {stream} removes the entry)"
            )
        hint = permission_hint(reply) or str(reply).strip()
        return f"{keys.STREAMS_INDEX} lists {stream!r} but {key!r} cannot be read: {hint}"
    return None


def _lag(info: dict[str, Any]) -> int | None:
    # Redis 6.2 has no "lag"; Redis 7 reports nil when it cannot tell. Unknown is None.
    lag = info.get("lag")
    return None if lag is None else int(lag)


def _pending(summary: Any) -> int:
    return int(summary["pending"]) if summary else 0


def _oldest(*ranges: Any) -> int | None:
    idles = [int(r[0]["time_since_delivered"]) for r in ranges if r]
    return max(idles) if idles else None


def _consumers(
    main: Any, retry: Any, breakers: dict[str, str], dead_after: float
) -> tuple[ConsumerInfo, ...]:
    merged: dict[str, tuple[int, int]] = {}
    for rows in (main or [], retry or []):
        for row in rows:
            name = text(row["name"])
            pending, idle = merged.get(name, (0, int(row["idle"])))
            # Idle since its last command on either stream: the smaller is the truth.
            merged[name] = (pending + int(row["pending"]), min(idle, int(row["idle"])))
    limit_ms = dead_after * 1000
    return tuple(
        ConsumerInfo(name, pending, idle, pending > 0 and idle > limit_ms, breakers.get(name))
        for name, (pending, idle) in sorted(merged.items())
    )
