"""The overview: every stream and group, judged as ``redrive health`` judges them.

Two collections through :mod:`redrive.monitoring` (the code behind ``redrive monitor``
and ``redrive health``): one over the health window of the thresholds in force (so the
alerts are exactly those of ``redrive health``), one over the metrics stream's whole
retention for the charts.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from redrive.monitoring.collector import collect
from redrive.monitoring.health import HealthReport, evaluate
from redrive.monitoring.live import take
from redrive.monitoring.model import GroupSnapshot, Snapshot
from redrive.web import charts
from redrive.web.context import STORE_FAILURES

if TYPE_CHECKING:
    from redrive.web.context import Dashboard

#: Seconds the charts cover: the metrics stream is trimmed to an hour (MINID).
CHART_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class GroupCharts:
    """The two charts of one group."""

    throughput: Markup
    error_rate: Markup


@dataclass(frozen=True, slots=True)
class Overview:
    """One overview: the judged snapshot, its report, and each group's charts."""

    snapshot: Snapshot
    report: HealthReport
    charts: dict[tuple[str, str], GroupCharts]

    def charts_of(self, group: GroupSnapshot) -> GroupCharts | None:
        """The charts of ``group`` (``None`` if it appeared between the two reads)."""
        return self.charts.get((group.stream, group.group))


class ChartCache:
    """The charts' collection, reused for one bucket (a minute): the health collection
    runs every second, but reading an hour of per-second metrics that often would cost
    Redis far more than the charts can show (a bucket changes every minute)."""

    def __init__(self, seconds: float = CHART_SECONDS / charts.BUCKETS) -> None:
        self.seconds = seconds
        self._taken = -math.inf
        self._drawn: dict[tuple[str, str], GroupCharts] = {}

    def get(self, dash: Dashboard) -> dict[tuple[str, str], GroupCharts]:
        """The charts, collected again if older than a bucket."""
        now = time.monotonic()
        if now - self._taken >= self.seconds:
            self._drawn, self._taken = _draw(dash), now
        return self._drawn


def _draw(dash: Dashboard) -> dict[tuple[str, str], GroupCharts]:
    config, streams = dash.settings.health, dash.settings.streams
    wide = collect(
        dash.sync, streams or None, window=CHART_SECONDS, dead_after=config.dead_after_seconds
    )
    return {
        (g.stream, g.group): GroupCharts(
            charts.throughput(g.window.runs, CHART_SECONDS),
            charts.error_rate(g.window.failures, g.window.runs, CHART_SECONDS),
        )
        for g in wide.groups()
    }


def _collect(dash: Dashboard) -> Overview:
    config, streams = dash.settings.health, dash.settings.streams
    snapshot = take(dash.sync, config, streams)
    return Overview(snapshot, evaluate(snapshot, config), dash.charts.get(dash))


async def load(dash: Dashboard) -> dict[str, Any]:
    """The overview's template context: ``view`` or a one-line ``error``."""
    try:
        return {"view": await asyncio.to_thread(_collect, dash), "error": None}
    except STORE_FAILURES as exc:
        return {"view": None, "error": dash.describe(exc)}


async def fragment(dash: Dashboard) -> str:
    """The live part of the overview, rendered."""
    return dash.html("_overview.html", **await load(dash))
