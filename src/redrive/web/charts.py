"""Charts as server-rendered SVG (no script, no chart library): a page's CSP allows none.

The per-second series of :class:`~redrive.monitoring.model.WindowStats` (handler runs,
failures) are folded into buckets and drawn as a polyline. Only numbers go into the
SVG; the caption is escaped like any other text.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 240, 48
BUCKETS = 60


def buckets(series: Sequence[int], count: int = BUCKETS) -> list[int]:
    """``series`` summed into ``count`` equal buckets (oldest first)."""
    if not series:
        return [0] * count
    size = max(1, -(-len(series) // count))
    out = [sum(series[i : i + size]) for i in range(0, len(series), size)]
    return [0] * (count - len(out)) + out


def ratios(failures: Sequence[int], runs: Sequence[int]) -> list[float]:
    """Failures / runs per bucket (0 where nothing ran)."""
    return [f / r if r else 0.0 for f, r in zip(failures, runs, strict=True)]


def line(values: Sequence[float], *, top: float | None = None, css: str, label: str) -> Markup:
    """A polyline of ``values`` scaled to ``top`` (default: their max), with a caption."""
    peak = top if top is not None else max(values, default=0.0)
    step = WIDTH / max(1, len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{HEIGHT - (v / peak * (HEIGHT - 2) if peak > 0 else 0) - 1:.1f}"
        for i, v in enumerate(values)
    )
    return Markup(
        f'<svg class="chart {escape(css)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none">'
        f"<title>{escape(label)}</title>"
        f'<polyline points="{points}" fill="none" vector-effect="non-scaling-stroke"/></svg>'
    )


def throughput(runs: Sequence[int], seconds: float) -> Markup:
    """Handler runs per second over the window."""
    series = buckets(runs)
    per = seconds / len(series)
    label = f"handler runs, peak {max(series) / per:.1f}/s over the last {seconds / 60:g} min"
    return line([v / per for v in series], css="runs", label=label)


def error_rate(failures: Sequence[int], runs: Sequence[int], seconds: float) -> Markup:
    """Share of failed runs per bucket, on a 0..100 % scale."""
    shares = ratios(buckets(failures), buckets(runs))
    label = f"error rate, peak {max(shares, default=0):.0%} over the last {seconds / 60:g} min"
    return line(shares, top=1.0, css="errors", label=label)


def bars(counts: Sequence[tuple[int, int]], *, label: str) -> Markup:
    """One bar per ``(hour start ms, count)``, oldest first (a failure group's hours)."""
    peak = max((n for _, n in counts), default=0)
    width = WIDTH / max(1, len(counts))
    rects = "".join(
        f'<rect x="{i * width:.1f}" y="{HEIGHT - h:.1f}" width="{max(1.0, width - 1):.1f}" '
        f'height="{h:.1f}"/>'
        for i, (_, n) in enumerate(counts)
        if (h := (n / peak * (HEIGHT - 2) if peak else 0)) > 0
    )
    return Markup(
        f'<svg class="chart hours" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none">'
        f"<title>{escape(label)}</title>{rects}</svg>"
    )
