"""Read a group's per-second metrics stream (``redrive:metrics:{S}:G``) over a window.

Each worker's consumer appends one entry per ``stats_interval`` (see
:mod:`redrive.runtime.stats`): the entry id is the publish time, the fields are the
counter deltas since its previous entry plus ``consumer``, ``breaker`` and
``interval_ms``. Summing the entries whose id falls in the window gives cluster-wide
totals without scraping any worker; bucketing them by second gives the sparklines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redrive.core.ids import stream_id_ms
from redrive.core.text import text
from redrive.monitoring.model import WindowStats

#: Entry fields that are not counter deltas.
META_FIELDS = frozenset({"consumer", "breaker", "interval_ms"})


def window_start(now_ms: int, seconds: float) -> int:
    """The first entry id time (ms) inside a window of ``seconds`` ending at ``now_ms``."""
    return now_ms - int(seconds * 1000) + 1


def summarize(entries: Sequence[Any], now_ms: int, seconds: float) -> WindowStats:
    """Fold XRANGE entries (``(id, {field: value})``, bytes) into :class:`WindowStats`."""
    start = window_start(now_ms, seconds)
    slots = max(1, int(seconds))
    runs = [0] * slots
    failures = [0] * slots
    totals: dict[str, int] = {}
    breakers: dict[str, str] = {}
    for entry_id, raw in entries:
        ms = stream_id_ms(entry_id)
        if ms < start:
            continue
        fields = {text(k): text(v) for k, v in raw.items()}
        for name, value in fields.items():
            if name not in META_FIELDS and not name.startswith("h:"):
                totals[name] = totals.get(name, 0) + int(value)
        slot = min(slots - 1, (ms - start) * slots // max(1, now_ms - start + 1))
        runs[slot] += int(fields.get("succeeded", 0)) + int(fields.get("failed", 0))
        failures[slot] += int(fields.get("failed", 0))
        if "consumer" in fields:
            breakers[fields["consumer"]] = fields.get("breaker", "none")
    return WindowStats(seconds, totals, tuple(runs), tuple(failures), breakers)
