"""Counts of dead letters per stream, reason, error type and error fingerprint.

Each fingerprint also counts its dead letters per hour of death (UTC hours, as ms since
the epoch of the hour's start), for "count per hour" charts of a failure group.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from redrive.dlq.fingerprint import fingerprint, normalise_message
from redrive.dlq.model import DeadLetter
from redrive.dlq.query import Filter, OnSkip, select

HOUR_MS = 3_600_000
#: At most this many hours in a zero-filled series (a month): the newest are kept.
MAX_HOURS = 31 * 24


@dataclass(slots=True)
class FingerprintStats:
    """One kind of failure: how often, where, and when first and last seen (ms)."""

    fingerprint: str
    error_type: str
    message: str  # normalised: the variable parts masked
    count: int = 0
    first_ms: int = 0
    last_ms: int = 0
    streams: set[str] = field(default_factory=set)
    sample_id: str = ""
    sample_ref: str = ""  # STREAM@ID of the first one (ids repeat across streams)
    hours: Counter[int] = field(default_factory=Counter)  # hour start (ms) -> count

    def add(self, entry: DeadLetter) -> None:
        """Count ``entry`` in this group."""
        self.count += 1
        dead = entry.dead_ms
        if not self.first_ms or dead < self.first_ms:
            self.first_ms, self.sample_id, self.sample_ref = dead, entry.id, entry.ref
        self.last_ms = max(self.last_ms, dead)
        self.streams.add(entry.stream)
        self.hours[dead - dead % HOUR_MS] += 1

    def per_hour(
        self, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[tuple[int, int]]:
        """``(hour start ms, count)`` for every hour from ``start_ms`` to ``end_ms``
        (default: first and last seen), zeros included, at most :data:`MAX_HOURS` (the
        newest). Example: ``fp.per_hour(now_ms - 24 * HOUR_MS, now_ms)`` for a day's chart."""
        first = self.first_ms if start_ms is None else start_ms
        last = self.last_ms if end_ms is None else end_ms
        if last < first:
            return []
        end = last - last % HOUR_MS
        start = max(first - first % HOUR_MS, end - (MAX_HOURS - 1) * HOUR_MS)
        return [(h, self.hours.get(h, 0)) for h in range(start, end + 1, HOUR_MS)]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (streams as a sorted list; ``per_hour``: ``[hour ms, count]``
        pairs of the hours that have dead letters, oldest first)."""
        return {"fingerprint": self.fingerprint, "error_type": self.error_type,
                "message": self.message, "count": self.count, "first_ms": self.first_ms,
                "last_ms": self.last_ms, "streams": sorted(self.streams),
                "sample_id": self.sample_id, "sample_ref": self.sample_ref,
                "per_hour": [[h, n] for h, n in sorted(self.hours.items())]}  # fmt: skip


@dataclass(slots=True)
class DlqStats:
    """Totals of the selected dead letters, grouped four ways."""

    total: int = 0
    streams: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    error_types: Counter[str] = field(default_factory=Counter)
    fingerprints: dict[str, FingerprintStats] = field(default_factory=dict)

    def add(self, entry: DeadLetter) -> None:
        """Count one dead letter."""
        self.total += 1
        self.streams[entry.stream] += 1
        self.reasons[entry.reason or "?"] += 1
        self.error_types[entry.error_type or "?"] += 1
        fp = fingerprint(entry)
        group = self.fingerprints.get(fp)
        if group is None:
            message = normalise_message(entry.error_message)
            group = self.fingerprints[fp] = FingerprintStats(fp, entry.error_type, message)
        group.add(entry)

    def top_fingerprints(self) -> list[FingerprintStats]:
        """Fingerprints, most frequent first."""
        return sorted(self.fingerprints.values(), key=lambda f: (-f.count, f.first_ms))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of everything."""
        return {"total": self.total, "streams": dict(self.streams.most_common()),
                "reasons": dict(self.reasons.most_common()),
                "error_types": dict(self.error_types.most_common()),
                "fingerprints": [f.to_json() for f in self.top_fingerprints()]}  # fmt: skip


async def dlq_stats(client: Redis, flt: Filter, *, on_skip: OnSkip | None = None) -> DlqStats:
    """Count the dead letters ``flt`` selects (a DLQ of the index that is not a stream is
    skipped, and ``on_skip`` told: see :func:`~redrive.dlq.query.resolve_streams`).

    Example::

        stats = await dlq_stats(client, Filter(streams=("ecommerce:orders",)))
        for fp in stats.top_fingerprints()[:5]:
            print(fp.count, fp.error_type, fp.message)
    """
    out = DlqStats()
    async for entry in select(client, flt, on_skip=on_skip):
        out.add(entry)
    return out
