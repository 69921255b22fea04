"""Pure pieces of monitoring: histograms, windows, thresholds, config, redaction, rendering."""

from __future__ import annotations

import time

import pytest
from rich.console import Console

from redrive.errors import ConfigError
from redrive.monitoring.alerts import redact_webhook
from redrive.monitoring.dashboard import fmt_age, render, sparkline
from redrive.monitoring.health import evaluate
from redrive.monitoring.model import GroupSnapshot, Snapshot, StreamSnapshot, WindowStats
from redrive.monitoring.thresholds import HealthConfig, State, Threshold, from_mapping
from redrive.monitoring.window import summarize
from redrive.runtime.timings import DURATION_BOUNDS, LATENCY_BOUNDS, Timings


def test_timings_count_every_duration_and_sample_latency() -> None:
    t = Timings()
    now_ms = int(time.time() * 1000)
    for _ in range(100):
        t.success(time.perf_counter() - 0.002, f"{now_ms - 1500}-0")
    snap = t.snapshot()
    duration = sum(v for k, v in snap.items() if k.startswith("h:duration:") and "sum" not in k)
    assert duration == 100
    assert snap[f"h:duration:{DURATION_BOUNDS.index(0.0025)}"] == 100  # 2 ms < 2.5 ms bucket
    latency = sum(v for k, v in snap.items() if k.startswith("h:latency:") and "sum" not in k)
    assert 1 <= latency < 100  # sampled: at most one per millisecond
    assert snap[f"h:latency:{LATENCY_BOUNDS.index(2.5)}"] >= 1  # 1.5 s is in (1.0, 2.5]


def test_lateness_ignores_missing_due_times_and_never_goes_negative() -> None:
    t = Timings()
    t.late(None)
    t.late("soon")
    t.late(str(int(time.time() * 1000) + 60_000))  # due in the future: counted as 0
    assert t.lateness.counts[0] == 1 and t.lateness.sum == 0.0


def test_window_sums_entries_inside_it_and_keeps_latest_breaker() -> None:
    now = 100_000
    entries = [
        (b"39000-0", {b"consumer": b"a", b"breaker": b"closed", b"succeeded": b"50"}),  # outside
        (b"41000-0", {b"consumer": b"a", b"breaker": b"closed", b"succeeded": b"8",
                      b"failed": b"2", b"h:duration:3": b"10"}),
        (b"99200-0", {b"consumer": b"a", b"breaker": b"open", b"failed": b"5"}),
        (b"99500-0", {b"consumer": b"b", b"breaker": b"closed", b"succeeded": b"5"}),
    ]  # fmt: skip
    w = summarize(entries, now, 60)
    assert w.totals == {"succeeded": 13, "failed": 7}
    assert w.error_rate == pytest.approx(7 / 20)
    assert w.breakers == {"a": "open", "b": "closed"}
    assert len(w.runs) == 60 and sum(w.runs) == 20 and w.runs[-1] == 10


def test_unknown_error_rate_is_none_not_zero() -> None:
    assert WindowStats(60).error_rate is None


@pytest.mark.parametrize(
    ("value", "state"), [(0, State.OK), (2.9, State.OK), (3, State.WARN), (6, State.CRIT)]
)
def test_threshold_levels(value: float, state: State) -> None:
    assert Threshold(3, 6).judge(value) is state


def test_threshold_without_crit_never_crits() -> None:
    assert Threshold(1, None).judge(10**9) is State.WARN


def test_config_from_toml_mapping() -> None:
    config = from_mapping(
        {
            "window_seconds": 30,
            "thresholds": {"dlq_size": {"warn": 1, "crit": 5}},
            "webhook": {"url": "https://hooks.example.com/x", "retries": 0},
        }
    )
    assert config.threshold("dlq_size") == Threshold(1, 5)
    assert config.threshold("lag") == HealthConfig().threshold("lag")
    assert config.window_seconds == 30 and config.webhook is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"thresholds": {"dlq_sise": {"warn": 1}}}, "unknown check 'dlq_sise'"),
        ({"thresholds": {"lag": {"warn": 10, "crit": 5}}}, "below warn"),
        ({"thresholds": {"lag": {"warn": "x"}}}, "use a number"),
        ({"webhook": {"url": "ftp://x"}}, "http:// or https://"),
        ({"webhook": {"url": "https://x", "token": "t"}}, "token"),
        ({"windw_seconds": 1}, "unknown key 'windw_seconds'"),
    ],
)
def test_config_errors_name_the_problem(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/…"),
        ("https://user:pw@alerts.internal:8443/h?token=abc", "https://alerts.internal:8443/…"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ],
)
def test_webhook_urls_are_redacted_to_the_host(url: str, shown: str) -> None:
    assert redact_webhook(url) == shown


def test_sparkline_and_ages() -> None:
    assert sparkline([0, 1, 2, 4]) == "▁▃▅█"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([0.5], top=1.0) == "▅"
    assert (fmt_age(None), fmt_age(1500), fmt_age(184_000), fmt_age(7_500_000)) == (
        "-", "1.5s", "3m04s", "2h05m"
    )  # fmt: skip


def test_frame_fits_80_columns_and_marks_unknown_lag() -> None:
    group = GroupSnapshot(
        stream="ecommerce:orders", group="orders-service-with-a-long-name", lag=None,
        pending=12, oldest_pending_idle_ms=125_000, consumers=(), retry_scheduled=3,
        retry_next_due_ms=None, retry_ready=1, counters={}, window=WindowStats(60),
    )  # fmt: skip
    stream = StreamSnapshot("ecommerce:orders", 500, 150, 0.0, (group,))
    snap = Snapshot(int(time.time() * 1000), 60, (stream,))
    console = Console(width=80, record=True)
    console.print(render(snap, evaluate(snap, HealthConfig())))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "lag ?" in text and "DLQ 150" in text and "pend 12 (oldest 2m05s)" in text
    assert "WARN dlq_size ecommerce:orders" in text


def test_hung_runs_of_the_window_are_shown() -> None:
    window = WindowStats(60, totals={"succeeded": 10, "failed": 4, "timed_out": 3})
    group = GroupSnapshot(
        stream="s", group="g", lag=0, pending=3, oldest_pending_idle_ms=1_000, consumers=(),
        retry_scheduled=0, retry_next_due_ms=None, retry_ready=0, counters={}, window=window,
    )  # fmt: skip
    snap = Snapshot(int(time.time() * 1000), 60, (StreamSnapshot("s", 20, 0, 0.0, (group,)),))
    console = Console(width=80, record=True)
    console.print(render(snap, evaluate(snap, HealthConfig())))
    assert "hung 3 runs (cancelled at their time limit)" in console.export_text()
