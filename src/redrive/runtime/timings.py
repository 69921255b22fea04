"""Fixed-bucket histograms of one consumer: handler duration, end-to-end latency, lateness.

Built for the hot path: an observation is one ``bisect`` over a short tuple of bucket
bounds and two in-place additions; no allocation, no lock (a consumer's lanes share one
event loop). The lane already takes a ``perf_counter`` before the handler, so a duration
costs one more clock read. End-to-end latency uses the stream id's milliseconds and a
wall-clock offset of the monotonic counter, refreshed once per publish, instead of a
``time.time()`` call per message.

Counts are published as per-bucket (not cumulative) integers named ``h:<name>:<i>``, and
the sum in integer microseconds as ``h:<name>:sum_us``, so Redis ``HINCRBY`` can add the
deltas of many workers (``monitoring`` turns them into Prometheus histograms).
"""

from __future__ import annotations

import time
from bisect import bisect_right
from time import perf_counter

#: Upper bounds (seconds) of the buckets; a last, unbounded bucket follows each.
DURATION_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)  # fmt: skip
LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                  60.0, 300.0, 900.0, 3600.0)  # fmt: skip
LATENESS_BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)  # fmt: skip

#: End-to-end latency is observed at most once per this many seconds per consumer.
LATENCY_SAMPLE_S = 0.001

#: Histogram name -> bucket bounds (the names used in the stats hash).
HISTOGRAMS = {
    "duration": DURATION_BOUNDS,
    "latency": LATENCY_BOUNDS,
    "lateness": LATENESS_BOUNDS,
}


class Histogram:
    """Counts per bucket plus a running sum (seconds)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` (seconds) in its bucket."""
        self.counts[bisect_right(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self, name: str) -> dict[str, int]:
        """``h:<name>:<i>`` per non-empty bucket and ``h:<name>:sum_us``."""
        out = {f"h:{name}:{i}": n for i, n in enumerate(self.counts) if n}
        if out:
            out[f"h:{name}:sum_us"] = round(self.sum * 1_000_000)
        return out


class Timings:
    """The three histograms of one consumer.

    Handler duration is observed for every run. End-to-end latency is *sampled*: at most
    one observation per ``LATENCY_SAMPLE_S`` per consumer (so every message below about
    1,000 msg/s), because parsing the id costs as much as the rest of an observation; its
    ``count`` is then the number of samples, its buckets and mean are representative.
    """

    __slots__ = ("_d_bounds", "_d_counts", "_l_bounds", "_l_counts", "_next_sample",
                 "duration", "latency", "lateness", "offset")  # fmt: skip

    def __init__(self) -> None:
        self.duration = Histogram(DURATION_BOUNDS)
        self.latency = Histogram(LATENCY_BOUNDS)
        self.lateness = Histogram(LATENESS_BOUNDS)
        # Direct references: one attribute load each on the hot path, no method call.
        self._d_bounds, self._d_counts = DURATION_BOUNDS, self.duration.counts
        self._l_bounds, self._l_counts = LATENCY_BOUNDS, self.latency.counts
        self._next_sample = 0.0
        self.offset = 0.0
        self.resync()

    def resync(self) -> None:
        """Re-measure wall clock minus ``perf_counter`` (called once per publish)."""
        self.offset = time.time() - perf_counter()

    def success(self, started: float, msg_id: str) -> None:
        """A handler that began at ``started`` (perf_counter) succeeded on ``msg_id``.

        Records its duration and (sampled) the end-to-end latency since the id's time:
        the origin id for a retry, so retry delays count, as a producer sees them.
        """
        end = perf_counter()
        elapsed = end - started
        self._d_counts[bisect_right(self._d_bounds, elapsed)] += 1
        self.duration.sum += elapsed
        if end < self._next_sample:
            return
        self._next_sample = end + LATENCY_SAMPLE_S
        try:
            latency = end + self.offset - int(msg_id[: msg_id.index("-")]) / 1000
        except ValueError:  # a hand-written id without a time: no latency to speak of
            return
        if latency < 0:  # the worker's clock is behind Redis's: count it as instant
            latency = 0.0
        self._l_counts[bisect_right(self._l_bounds, latency)] += 1
        self.latency.sum += latency

    def late(self, due_ms: str | None) -> None:
        """A retry due at ``due_ms`` (``redrive-due-ms``) starts now: record the lateness."""
        if due_ms is None or not due_ms.isdigit():
            return
        self.lateness.observe(max(0.0, time.time() - int(due_ms) / 1000))

    def snapshot(self) -> dict[str, int]:
        """Every histogram as flat integer fields (see the module docstring)."""
        out = self.duration.snapshot("duration")
        out.update(self.latency.snapshot("latency"))
        out.update(self.lateness.snapshot("lateness"))
        return out
