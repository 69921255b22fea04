"""Per-consumer counters, published to Redis as per-group totals (HINCRBY, cheap).

The counters are plain integer attributes so the hot path pays one attribute increment.

Once per ``stats_interval`` a consumer publishes what changed since its last publish:

- ``HINCRBY`` into the group's stats hash (``redrive:stats:{S}:G``): cumulative totals
  of every consumer together, the source of Prometheus counters and histograms;
- one ``XADD`` to the group's metrics stream (``redrive:metrics:{S}:G``) holding the same
  deltas plus the consumer's name, breaker state and the interval: per-second buckets any
  monitor can sum over a window for cluster-wide rates. ``MINID`` trims entries older
  than ``METRICS_RETENTION_MS`` and an ``EXPIRE`` drops the stream once no worker is left.
  An entry is written every interval even when nothing changed: it is also a heartbeat.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from redrive.runtime.timings import Timings
from redrive.store import keys

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline

    from redrive.core.breaker import CircuitBreaker

FIELDS = (
    "received",
    "succeeded",
    "failed",
    "retried",
    "dead",
    "fenced",
    "stale_acks",
    "reclaimed",
    "trimmed",
    "breaker_parked",
    "breaker_opened",
    "breaker_closed",
    "groups_recreated",
    "timed_out",
    "duplicates",
    "idempotency_busy",
    "committed",
)

#: How much per-second history the metrics stream keeps (ms), and its idle TTL (s).
# An hour: the dashboard's charts show the last hour (about 3,600 entries per busy
# consumer, a few hundred kB).
METRICS_RETENTION_MS = 60 * 60 * 1000
METRICS_TTL = 60 * 60

#: Every live :class:`Stats` of this process (a worker's own ``/metrics`` reads them).
LIVE: weakref.WeakSet[Stats] = weakref.WeakSet()


class Stats:
    """Counters of one consumer; ``dead_by_reason`` splits ``dead``.

    ``timings`` (histograms) is ``None`` when metrics are off; ``breaker`` is the
    consumer's circuit breaker, read for its state when publishing.
    """

    __slots__ = (*FIELDS, "__weakref__", "_published", "_published_at", "breaker", "consumer",
                 "dead_by_reason", "failed_by_class", "group", "stream", "timings", "_entry_state",
                 "_expire_at")  # fmt: skip

    def __init__(
        self, stream: str = "", group: str = "", consumer: str = "", *, metrics: bool = True
    ) -> None:
        self.received = 0
        self.succeeded = 0
        self.failed = 0
        self.retried = 0
        self.dead = 0
        self.fenced = 0
        self.stale_acks = 0
        self.reclaimed = 0
        self.trimmed = 0
        self.breaker_parked = 0
        self.breaker_opened = 0
        self.breaker_closed = 0
        self.groups_recreated = 0
        self.timed_out = 0
        self.duplicates = 0  # idempotency: runs skipped, their key was done
        self.idempotency_busy = 0  # idempotency: runs put off, the key claimed elsewhere
        self.committed = 0  # idempotency: keys marked done with an ack
        self.dead_by_reason: Counter[str] = Counter()
        self.failed_by_class: Counter[str] = Counter()
        self._published: dict[str, int] = {}
        self._published_at = time.time()
        self._entry_state = ""  # the breaker state of the last metrics entry
        self._expire_at = 0.0  # when the metrics stream's TTL was last renewed
        self.stream, self.group, self.consumer = stream, group, consumer
        self.breaker: CircuitBreaker | None = None
        self.timings = Timings() if metrics else None
        if stream:
            LIVE.add(self)

    @property
    def breaker_state(self) -> str:
        """``closed``, ``open``, ``half_open`` or ``none`` (no breaker)."""
        return "none" if self.breaker is None else self.breaker.state.value

    def snapshot(self) -> dict[str, int]:
        """All counters as a flat dict (``dead:<reason>``, ``failed:<class>``, ``h:…``)."""
        out = {name: int(getattr(self, name)) for name in FIELDS}
        out.update({f"dead:{k}": v for k, v in self.dead_by_reason.items()})
        out.update({f"failed:{k}": v for k, v in self.failed_by_class.items()})
        if self.timings is not None:
            out.update(self.timings.snapshot())
        return out

    async def publish(self, client: Redis, key: str, *, heartbeat: float = 0.0) -> None:
        """Add what changed since the last publish to the group's stats hash.

        With metrics on, also append the per-second entry to the metrics stream; while
        nothing changed (no counter, the breaker closed or absent and as it was), only
        once per ``heartbeat`` seconds.
        """
        now = self.snapshot()
        delta = {k: v - self._published.get(k, 0) for k, v in now.items()}
        delta = {k: v for k, v in delta.items() if v}
        now_s = time.time()
        with_stream = self.timings is not None and bool(self.stream)
        if with_stream and not delta:
            state = self.breaker_state
            quiet = state in ("closed", "none") and state == self._entry_state
            with_stream = not quiet or now_s - self._published_at >= heartbeat
        if not delta and not with_stream:
            return
        pipe = client.pipeline(transaction=False)
        for name, value in delta.items():
            pipe.hincrby(key, name, value)
        if with_stream:
            self._append_entry(pipe, delta, now_s)
        await pipe.execute()
        self._published = now
        self._published_at = now_s
        if self.timings is not None:
            self.timings.resync()

    def _append_entry(self, pipe: Pipeline, delta: dict[str, int], now_s: float) -> None:
        stream_key = keys.metrics(self.stream, self.group)
        fields: dict[Any, Any] = {
            "consumer": self.consumer,
            "breaker": self.breaker_state,
            "interval_ms": max(1, round((now_s - self._published_at) * 1000)),
            **delta,
        }
        floor = int(now_s * 1000) - METRICS_RETENTION_MS
        # MINID (Redis >= 6.2) bounds the history by time, whatever the number of workers.
        pipe.xadd(stream_key, fields, minid=floor, approximate=True)
        self._entry_state = fields["breaker"]
        if now_s - self._expire_at >= METRICS_TTL / 10:  # the TTL is renewed well before
            pipe.expire(stream_key, METRICS_TTL)
            self._expire_at = now_s
