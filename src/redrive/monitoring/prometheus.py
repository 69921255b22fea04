"""Prometheus exposition: cluster-wide (from Redis) or one worker's own counters.

``redrive metrics`` serves :class:`ClusterCollector`: on every scrape it takes a
:class:`~redrive.monitoring.model.Snapshot` and exports the workers' cumulative counters
and histograms (the stats hashes) plus gauges of streams, groups and consumers. A worker
started with ``--metrics-port`` serves :class:`WorkerCollector`: the same counter and
histogram names from this process's consumers, with a ``consumer`` label added.

Names follow the Prometheus conventions: ``redrive_`` prefix, ``_total`` counters, base
units in the name (``_seconds``, ``_messages``). An unknown value (a group's lag on
Redis 6.2) is left out, never exported as 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from redrive.errors import ConfigError
from redrive.monitoring.model import GroupSnapshot, Snapshot
from redrive.runtime import buffer as runtime_buffer
from redrive.runtime import stats as runtime_stats
from redrive.runtime.timings import HISTOGRAMS

# (stats field, metric name without _total, help). Counters of the stats hash.
PLAIN_COUNTERS = (
    ("received", "redrive_messages_received", "Entries read by consumers (incl. retries)."),
    ("fenced", "redrive_fence_rejections", "Moves refused: another consumer owns the entry."),
    ("stale_acks", "redrive_stale_acks", "Acks of entries that were no longer pending."),
    ("reclaimed", "redrive_messages_reclaimed", "Entries reclaimed from idle consumers."),
    ("trimmed", "redrive_payloads_lost", "Pending entries whose payload was trimmed."),
    ("breaker_parked", "redrive_breaker_parked", "Failures re-scheduled by an open breaker."),
    ("breaker_opened", "redrive_breaker_opened", "Times the circuit breaker opened."),
    ("breaker_closed", "redrive_breaker_closed", "Times the circuit breaker closed again."),
    ("timed_out", "redrive_handler_timeouts", "Handler runs cancelled at their time limit."),
    ("groups_recreated", "redrive_groups_recreated", "Consumer groups found missing, recreated."),
    ("duplicates", "redrive_duplicates_skipped", "Runs skipped: their idempotency key was done."),
    ("idempotency_busy", "redrive_idempotency_busy",
     "Runs put off: their idempotency key was claimed by another consumer."),
    ("committed", "redrive_idempotency_keys_committed",
     "Idempotency keys marked done with their ack (each tracked for the key TTL)."),
)  # fmt: skip
OUTCOMES = (("succeeded", "succeeded"), ("retried", "retried"), ("dead", "dead_lettered"))
HISTOGRAM_NAMES = {
    "duration": ("redrive_handler_duration_seconds", "Handler run time (every run)."),
    "latency": (
        "redrive_end_to_end_latency_seconds",
        "Stream id time to handler success (sampled, at most 1 per ms per consumer).",
    ),
    "lateness": ("redrive_retry_lateness_seconds", "Retry start minus its due time."),
}
BREAKER_STATES = ("closed", "open", "half_open")
STORE_FAILURES = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)

log = logging.getLogger("redrive.metrics")


class Families:
    """Counter and histogram families keyed by label names, filled group by group."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.items: dict[str, Any] = {}

    def counter(self, name: str, doc: str, extra: tuple[str, ...] = ()) -> CounterMetricFamily:
        """The counter family ``name`` (created on first use)."""
        if name not in self.items:
            self.items[name] = CounterMetricFamily(name, doc, labels=[*self.labels, *extra])
        family: CounterMetricFamily = self.items[name]
        return family

    def gauge(self, name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        """The gauge family ``name`` (created on first use)."""
        if name not in self.items:
            self.items[name] = GaugeMetricFamily(name, doc, labels=[*self.labels, *extra])
        family: GaugeMetricFamily = self.items[name]
        return family

    def histogram(self, name: str, doc: str) -> HistogramMetricFamily:
        """The histogram family ``name`` (created on first use)."""
        if name not in self.items:
            self.items[name] = HistogramMetricFamily(name, doc, labels=self.labels)
        family: HistogramMetricFamily = self.items[name]
        return family

    def add_counters(self, values: list[str], counters: Mapping[str, int]) -> None:
        """Counters and histograms of one label set from stats-hash style fields."""
        processed = self.counter(
            "redrive_messages_processed",
            "Messages settled by outcome.",
            ("outcome",),
        )
        for field, outcome in OUTCOMES:
            processed.add_metric([*values, outcome], counters.get(field, 0))
        for field, name, doc in PLAIN_COUNTERS:
            self.counter(name, doc).add_metric(values, counters.get(field, 0))
        by_class = self.counter(
            "redrive_handler_failures", "Failed handler runs by error class.", ("error_class",)
        )
        by_reason = self.counter(
            "redrive_messages_dead_lettered", "Dead letters by reason.", ("reason",)
        )
        for field, value in sorted(counters.items()):
            kind, _, label = field.partition(":")
            if kind == "failed" and label:
                by_class.add_metric([*values, label], value)
            elif kind == "dead" and label:
                by_reason.add_metric([*values, label], value)
        for short, bounds in HISTOGRAMS.items():
            name, doc = HISTOGRAM_NAMES[short]
            buckets, total = _buckets(counters, short, bounds)
            self.histogram(name, doc).add_metric(values, buckets, total)


def _buckets(
    counters: Mapping[str, int], short: str, bounds: tuple[float, ...]
) -> tuple[list[tuple[str, float]], float]:
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for i, bound in enumerate((*bounds, float("inf"))):
        cumulative += counters.get(f"h:{short}:{i}", 0)
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    return buckets, counters.get(f"h:{short}:sum_us", 0) / 1_000_000


class ClusterCollector(Collector):
    """Exports a fresh snapshot on every scrape (``snapshot`` is called each time).

    ``redrive_up`` is 1 when the snapshot could be taken. With ``tolerant`` (the metrics
    server) a failed read of Redis exports ``redrive_up 0`` instead of failing the scrape,
    and ``describe`` words the one warning logged per change of state (down, up again,
    an index entry that cannot be read); without it the error propagates (``--once``).
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        *,
        tolerant: bool = False,
        describe: Callable[[BaseException], str] = str,
    ) -> None:
        self.snapshot = snapshot
        self.tolerant = tolerant
        self.explain = describe  # not "describe": the registry calls a describe() method
        self.up: bool | None = None
        self.problems: list[str] = []

    def collect(self) -> Iterator[Any]:
        """Build every family from one snapshot."""
        up = GaugeMetricFamily("redrive_up", "1 if this scrape could read Redis, else 0.")
        try:
            snap = self.snapshot()
        except STORE_FAILURES as exc:
            if not self.tolerant:
                raise
            self._changed(False, exc)
            up.add_metric([], 0)
            yield up
            return
        self._changed(True, None)
        up.add_metric([], 1)
        yield up
        yield from _snapshot_families(snap)
        if self.tolerant and snap.problems() != self.problems:
            for problem in set(snap.problems()) - set(self.problems):
                log.warning("%s", problem)
            self.problems = snap.problems()

    def _changed(self, up: bool, exc: BaseException | None) -> None:
        if up == self.up:
            return
        if exc is not None:
            log.warning("Redis unreachable, serving redrive_up 0 until it answers: %s",
                        self.explain(exc))  # fmt: skip
        elif self.up is not None:
            log.warning("Redis answers again: serving every metric")
        self.up = up


def _snapshot_families(snap: Snapshot) -> Iterator[Any]:
    per_group = Families(["stream", "group"])
    per_stream = Families(["stream"])
    unreadable = per_stream.gauge(
        "redrive_stream_unreadable", "1 for an index entry that cannot be read (see the log)."
    )
    for stream in snap.streams:
        if stream.problem is not None:
            unreadable.add_metric([stream.stream], 1)
            continue
        if stream.length is not None:
            length = per_stream.gauge("redrive_stream_length_messages", "Stream entries.")
            length.add_metric([stream.stream], stream.length)
        dlq = per_stream.gauge("redrive_dlq_length_messages", "Entries in the DLQ stream.")
        dlq.add_metric([stream.stream], stream.dlq_length)
        for group in stream.groups:
            values = [group.stream, group.group]
            per_group.add_counters(values, group.counters)
            _group_gauges(per_group, values, group, snap.window_seconds)
    yield from per_stream.items.values()
    yield from per_group.items.values()


def _group_gauges(f: Families, values: list[str], g: GroupSnapshot, window: float) -> None:
    lag = f.gauge("redrive_group_lag_messages", "Entries not yet delivered to the group.")
    if g.lag is not None:  # unknown lag is left out, never reported as 0
        lag.add_metric(values, g.lag)
    gauges: list[tuple[str, str, float | None]] = [
        ("redrive_pending_messages", "Delivered, not yet acked (stream + retry).", g.pending),
        ("redrive_oldest_pending_idle_seconds", "Idle time of the oldest pending entry.",
         None if g.oldest_pending_idle_ms is None else g.oldest_pending_idle_ms / 1000),
        ("redrive_retry_scheduled_messages", "Retries waiting for their time.", g.retry_scheduled),
        ("redrive_retry_ready_messages", "Retries due, not yet settled.", g.retry_ready),
        ("redrive_idempotency_keys_tracked", "Idempotency keys marked done, kept for their TTL.",
         g.idempotency_keys),
        ("redrive_retry_next_due_timestamp_seconds", "Due time of the next retry.",
         None if g.retry_next_due_ms is None else g.retry_next_due_ms / 1000),
        ("redrive_handler_error_ratio", f"Failed / all handler runs over {window:g} s.",
         g.window.error_rate),
    ]  # fmt: skip
    for name, doc, value in gauges:
        family = f.gauge(name, doc)
        if value is not None:
            family.add_metric(values, value)
    consumers = f.gauge("redrive_consumers", "Consumers by state.", ("state",))
    dead = len(g.dead_consumers)
    consumers.add_metric([*values, "alive"], len(g.consumers) - dead)
    consumers.add_metric([*values, "dead"], dead)
    idle = f.gauge("redrive_consumer_idle_seconds", "Idle time per consumer.", ("consumer",))
    owned = f.gauge("redrive_consumer_pending_messages", "Pending per consumer.", ("consumer",))
    breaker = f.gauge("redrive_breaker_state", "1 for the current state.", ("consumer", "state"))
    for c in g.consumers:
        idle.add_metric([*values, c.name], c.idle_ms / 1000)
        owned.add_metric([*values, c.name], c.pending)
    for name, state in sorted(g.window.breakers.items()):
        for s in BREAKER_STATES:
            breaker.add_metric([*values, name, s], 1.0 if s == state else 0.0)


class WorkerCollector(Collector):
    """This process's consumers (``redrive worker --metrics-port``), no Redis involved."""

    def collect(self) -> Iterator[Any]:
        """Counters and histograms per (stream, group, consumer), and breaker states."""
        families = Families(["stream", "group", "consumer"])
        live = sorted(runtime_stats.LIVE, key=lambda s: (s.stream, s.group, s.consumer))
        breaker = families.gauge("redrive_breaker_state", "1 for the current state.", ("state",))
        for stats in live:
            values = [stats.stream, stats.group, stats.consumer]
            families.add_counters(values, stats.snapshot())
            for s in BREAKER_STATES:
                breaker.add_metric([*values, s], 1.0 if s == stats.breaker_state else 0.0)
        yield from families.items.values()
        yield from read_ahead_metrics(list(runtime_buffer.BUDGETS))


def read_ahead_metrics(budgets: list[runtime_buffer.ReadBudget]) -> Iterator[Any]:
    """The process's read-ahead byte budget: held, limit, and how often reading waited."""
    used = GaugeMetricFamily(
        "redrive_read_ahead_bytes", "Bytes of messages read and not yet finished."
    )
    used.add_metric([], float(sum(b.used for b in budgets)))
    limit = GaugeMetricFamily(
        "redrive_read_ahead_limit_bytes", "The read-ahead budget (0: no byte bound)."
    )
    limit.add_metric([], float(sum(b.limit or 0 for b in budgets)))
    waits = CounterMetricFamily(
        "redrive_read_ahead_waits", "Times a reader waited for the read-ahead budget."
    )
    waits.add_metric([], float(sum(b.waits for b in budgets)))
    yield from (used, limit, waits)


def registry_of(collector: Collector) -> CollectorRegistry:
    """A registry holding only ``collector`` (no process or platform defaults)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def serve_worker_metrics(port: int, addr: str = "127.0.0.1") -> Any:
    """Serve this process's :class:`WorkerCollector` on ``http://addr:port/metrics``.

    Loopback by default: a worker's counters are nobody else's business unless
    ``--metrics-host`` says so. Runs in a daemon thread (prometheus_client's own server),
    so it never delays the worker's event loop and dies with the process. Returns the
    server (``server_address``, ``shutdown()``), or None on prometheus_client < 0.20.
    """
    from prometheus_client import start_http_server

    try:
        started = start_http_server(port, addr=addr, registry=registry_of(WorkerCollector()))
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}") from None
    return started[0] if isinstance(started, tuple) else None
