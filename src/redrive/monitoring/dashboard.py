"""The terminal dashboard: one frame from a snapshot and a health report (rich).

Laid out for 80 columns. Per stream a header (length, DLQ size and growth), then per
group two lines — handler runs per second with a sparkline of the window, the error
rate with its own sparkline; lag, pending (and the oldest pending age), the retry backlog
(scheduled + due, next due time), consumers (dead ones named) and breaker states — and one
line per consumer. Active alerts (checks not OK) close the frame.

Example::

    console.print(render(snapshot, evaluate(snapshot, HealthConfig())))
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from redrive.monitoring.health import HealthReport
from redrive.monitoring.model import GroupSnapshot, Snapshot, StreamSnapshot
from redrive.monitoring.thresholds import State

BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 30
RECENT_SECONDS = 5  # "now" rates average this many seconds, so one quiet second is no dip
MAX_CONSUMER_LINES = 6
STATE_STYLE = {State.OK: "bold green", State.WARN: "bold yellow", State.CRIT: "bold red",
               State.UNKNOWN: "bold magenta"}  # fmt: skip
BREAKER_STYLE = {"closed": "green", "open": "bold red", "half_open": "yellow", "none": "dim"}


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH, top: float | None = None) -> str:
    """The last ``width`` values as block characters scaled to ``top`` (default: their max)."""
    tail = list(values)[-width:]
    peak = top if top is not None else max(tail, default=0)
    if peak <= 0:
        return BLOCKS[0] * len(tail)
    steps = len(BLOCKS) - 1
    return "".join(BLOCKS[min(steps, round(v / peak * steps))] for v in tail)


def recent_rate(series: Sequence[int], seconds: int = RECENT_SECONDS) -> float:
    """Average per second of the last ``seconds`` of a per-second series."""
    tail = list(series)[-seconds:]
    return sum(tail) / len(tail) if tail else 0.0


def fmt_age(ms: int | None) -> str:
    """``1.2s``, ``3m04s``, ``2h05m`` or ``-``."""
    if ms is None:
        return "-"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def render(snapshot: Snapshot, report: HealthReport) -> RenderableType:
    """One frame: a title line, a panel per stream, the active alerts."""
    stamp = time.strftime("%H:%M:%S", time.localtime(snapshot.taken_ms / 1000))
    title = Text.assemble(
        ("redrive monitor", "bold"),
        f"  {stamp}  {len(snapshot.streams)} streams  window {snapshot.window_seconds:g}s  ",
        (f"● {report.state.value}", STATE_STYLE[report.state]),
    )
    parts: list[RenderableType] = [title]
    if not snapshot.streams:
        parts.append(Text("no streams yet: start a worker (redrive worker MODULE:APP)", "dim"))
    parts.extend(_stream_panel(s, snapshot.taken_ms) for s in snapshot.streams)
    parts.append(_alerts(report))
    return Group(*parts)


def _stream_panel(s: StreamSnapshot, now_ms: int) -> Panel:
    if s.problem is not None:
        title = Text.assemble((s.stream, "bold cyan"), ("  unreadable", "bold red"))
        return Panel(Text(s.problem, "red"), title=title, title_align="left", padding=(0, 1))
    length = "missing" if s.length is None else str(s.length)
    title = Text.assemble(
        (s.stream, "bold cyan"),
        f"  len {length}  ",
        ("DLQ ", "bold"),
        (str(s.dlq_length), "red" if s.dlq_length else "green"),
        f" (+{s.dlq_growth_per_minute:.1f}/min)",
    )
    body: list[RenderableType] = []
    for g in s.groups:
        body.extend(_group_lines(g, now_ms))
    if not s.groups:
        body.append(Text("no consumer groups", "dim"))
    return Panel(Group(*body), title=title, title_align="left", padding=(0, 1))


def _group_lines(g: GroupSnapshot, now_ms: int) -> list[Text]:
    w = g.window
    errors = [f / r if r else 0.0 for f, r in zip(w.failures, w.runs, strict=True)]
    rate = w.error_rate
    throughput = Text.assemble(
        (f"{g.group:<16.16}", "bold"),
        f" {recent_rate(w.runs):7.1f}/s ",
        (sparkline(w.runs, 20), "cyan"),
        "  err ",
        ("   -  " if rate is None else f"{rate:5.1%} ", "red" if rate else "green"),
        (sparkline(errors, 16, top=1.0), "red"),
    )

    lag = "?" if g.lag is None else str(g.lag)  # unknown (Redis 6.2), not zero
    next_due = "-" if g.retry_next_due_ms is None else fmt_age(g.retry_next_due_ms - now_ms)
    dead = len(g.dead_consumers)
    backlog = Text.assemble(
        f"  lag {lag}  pend {g.pending} (oldest {fmt_age(g.oldest_pending_idle_ms)})"
        f"  retry {g.retry_scheduled}+{g.retry_ready} (next {next_due})"
        f"  cons {len(g.consumers)}",
        (f" ({dead} dead)" if dead else "", "bold red"),
    )
    lines = [throughput, backlog]
    hung = w.totals.get("timed_out", 0)  # runs cancelled at the handler's time limit
    if hung:
        lines.append(Text(f"  hung {hung} runs (cancelled at their time limit)", "bold red"))
    for c in g.consumers[:MAX_CONSUMER_LINES]:
        state = "DEAD" if c.dead else "ok"
        breaker = c.breaker or "-"
        lines.append(
            Text.assemble(
                f"    {c.name:<24.24} pend {c.pending:>5}  idle {fmt_age(c.idle_ms):>7}  ",
                (f"{state:<4}", "bold red" if c.dead else "green"),
                "  breaker ",
                (breaker, BREAKER_STYLE.get(breaker, "")),
            )
        )
    if len(g.consumers) > MAX_CONSUMER_LINES:
        lines.append(Text(f"    … {len(g.consumers) - MAX_CONSUMER_LINES} more", "dim"))
    return lines


def _alerts(report: HealthReport) -> Panel:
    failing = report.failing()
    if not failing:
        return Panel(Text("none — all checks OK", "green"), title="alerts", title_align="left")
    lines = [
        Text.assemble(
            (f"{r.state.value:<4}", STATE_STYLE[r.state]),
            f" {r.check} {r.subject}: {r.message}",
        )
        for r in failing
    ]
    return Panel(Group(*lines), title=f"alerts ({len(failing)})", title_align="left")
