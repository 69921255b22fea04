"""The simulation report: accounting per stream, producer outcomes, faults, lateness.

The verdict (:attr:`SimulationReport.ok`) fails when a message was lost, a duplicate
has no fault to explain it, or anything is left pending after the drain — and, in an
idempotent scenario, when any effect counter is not what its outcome demands.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redrive.simulate.accounting import StreamAccount
from redrive.simulate.chaos import FaultEvent


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``; ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return float(ordered[rank])


@dataclass(slots=True)
class SimulationReport:
    """Everything a run found; :meth:`to_json` is the ``--json`` output."""

    scenario: str
    seed: int
    seconds: float
    t0: float
    streams: list[StreamAccount]
    producer: dict[str, Any]
    events: list[FaultEvent]
    lateness_ms: list[int] = field(default_factory=list)
    settled: bool = True
    worker_exit_codes: list[int | None] = field(default_factory=list)
    broken_build: bool = False

    @property
    def produced(self) -> int:
        """Messages in the streams, all streams together."""
        return sum(s.produced for s in self.streams)

    @property
    def lost(self) -> int:
        """Messages neither succeeded, nor dead, nor pending: must be 0."""
        return sum(len(s.lost) for s in self.streams)

    @property
    def unexplained_duplicates(self) -> int:
        """Duplicates no fault explains: must be 0."""
        return sum(s.unexplained_duplicates for s in self.streams)

    @property
    def rerun_own_finished(self) -> int:
        """Messages a process ran again after it had finished them: must be 0."""
        return sum(s.rerun_own_finished for s in self.streams)

    @property
    def pending(self) -> int:
        """Messages still unsettled after the drain: must be 0."""
        return sum(s.pending for s in self.streams)

    @property
    def effect_defects(self) -> int:
        """Double or missing effects, effects on dead letters (idempotent): must be 0."""
        return sum(s.effects.defects for s in self.streams if s.effects is not None)

    @property
    def ok(self) -> bool:
        """The verdict: nothing lost, every duplicate explained (none a process re-running
        its own finished work), nothing pending, every effect exactly once."""
        return self.verdict()

    def verdict(self, reruns_allowed: int = 0) -> bool:
        """:attr:`ok`, allowing ``reruns_allowed`` re-runs of own finished work."""
        return (
            self.lost == 0
            and self.unexplained_duplicates == 0
            and self.rerun_own_finished <= reruns_allowed
            and self.pending == 0
            and self.effect_defects == 0
        )

    def effects(self) -> dict[str, int] | None:
        """The effect counts of all streams summed (``None``: not an idempotent run)."""
        counted = [s.effects for s in self.streams if s.effects is not None]
        if not counted:
            return None
        total: dict[str, int] = defaultdict(int)
        for account in counted:
            for name, value in account.to_json().items():
                if isinstance(value, int):
                    total[name] += value
        return dict(total)

    def lateness(self) -> dict[str, float | int | None]:
        """Retry lateness (ms after ``redrive-due-ms`` that a retry started)."""
        values = [float(v) for v in self.lateness_ms]
        return {
            "retries": len(values),
            "p50_ms": percentile(values, 50),
            "p99_ms": percentile(values, 99),
            "max_ms": max(values) if values else None,
        }

    def recovery(self) -> dict[str, dict[str, Any]]:
        """Per fault kind: how many, entries stranded, recovery seconds (median, max)."""
        grouped: dict[str, list[FaultEvent]] = defaultdict(list)
        for event in self.events:
            grouped[event.kind].append(event)
        out: dict[str, dict[str, Any]] = {}
        for kind, events in sorted(grouped.items()):
            times = [e.recovery_s for e in events if e.recovery_s is not None]
            out[kind] = {
                "count": len(events),
                "stranded": sum(e.stranded for e in events),
                "recovery_p50_s": round(statistics.median(times), 3) if times else None,
                "recovery_max_s": round(max(times), 3) if times else None,
                "unrecovered": len(events) - len(times),
            }
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole report."""
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "ok": self.ok,
            "lost": self.lost,
            "unexplained_duplicates": self.unexplained_duplicates,
            "duplicates": sum(len(s.duplicates) for s in self.streams),
            "rerun_own_finished": self.rerun_own_finished,
            "pending": self.pending,
            "effects": self.effects(),
            "produced": self.produced,
            "settled": self.settled,
            "seconds": round(self.seconds, 3),
            "broken_build": self.broken_build,
            "producer": self.producer,
            "retry_lateness": self.lateness(),
            "recovery": self.recovery(),
            "faults": [e.to_json(self.t0) for e in self.events],
            "worker_exit_codes": self.worker_exit_codes,
            "streams": [s.to_json() for s in self.streams],
        }
