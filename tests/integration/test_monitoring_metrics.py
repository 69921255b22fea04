"""Worker metrics end to end: a known mix of outcomes, read back through every exporter.

The app fails messages on purpose: ``ok`` succeeds, ``flaky`` fails once (retried, then
succeeds), ``doomed`` fails every time (3 attempts → ``max_retries_exceeded``), ``bad``
raises a permanent error, and malformed JSON is ``poison``. The exported counters must
equal what the mix implies, exactly.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import redis
import redis.asyncio
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from redrive import App, Message, Reject, RetryPolicy
from redrive.cli.main import _register, cli
from redrive.monitoring.collector import collect
from redrive.monitoring.prometheus import ClusterCollector, WorkerCollector, registry_of
from redrive.store import keys
from tests.integration.helpers import running, until

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "redrive-dashboard.json"
MIX = {"ok": 20, "flaky": 6, "doomed": 4, "bad": 3, "poison": 2}
# Handler runs: ok 20, flaky 6x2, doomed 4x2 (max_retries=1), bad 3, poison 2.
RUNS = 20 + 12 + 8 + 3 + 2
FAILED = 6 + 8 + 3 + 2


def build_app(url: str, stream: str) -> App:
    """An app whose outcome depends only on the message body."""
    app = App(url)

    @app.handler(stream, group="g", retry=RetryPolicy(max_retries=1, base_delay=0.05),
                 breaker=None)  # fmt: skip
    async def handle(msg: Message) -> None:
        kind = msg.data["kind"]
        if (kind == "flaky" and msg.attempt == 1) or kind == "doomed":
            raise RuntimeError(f"{kind} failure")
        if kind == "bad":
            raise Reject("bad order")

    return app


async def publish_mix(r: redis.asyncio.Redis, stream: str) -> int:
    """Publish MIX; return the number of messages."""
    for kind, n in MIX.items():
        for i in range(n):
            body = "{not json" if kind == "poison" else json.dumps({"kind": kind, "i": i})
            await r.xadd(stream, {"data": body})
    return sum(MIX.values())


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Parsed exposition: family name -> samples (name, labels, value)."""
    return {
        f.name: [(s.name, dict(s.labels), s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def value(fams: dict[str, list[tuple[str, dict[str, str], float]]], sample: str,
          **labels: str) -> float:  # fmt: skip
    """The value of the one sample named ``sample`` whose labels include ``labels``."""
    family = sample.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
    found = [v for n, lab, v in fams[family] if n == sample and labels.items() <= lab.items()]
    assert len(found) == 1, (sample, labels, found)
    return found[0]


async def run_mix(url: str, aredis: redis.asyncio.Redis, stream: str) -> None:
    """Run the app over the mix until every message is settled and counters published."""
    total = await publish_mix(aredis, stream)
    dead = sum(MIX[k] for k in ("doomed", "bad", "poison"))
    stats_key = keys.stats(stream, "g")
    async with running(build_app(url, stream), url, stats_interval=0.05):
        await until(lambda: _xlen(aredis, keys.dlq(stream), dead), 15, "dead letters")
        await until(lambda: _hget(aredis, stats_key, "succeeded", total - dead), 15, "counters")
        await asyncio.sleep(0.15)  # one more publish: the metrics stream has the last deltas


async def _xlen(r: redis.asyncio.Redis, key: str, n: int) -> bool:
    return bool(await r.xlen(key) >= n)


async def _hget(r: redis.asyncio.Redis, key: str, field: str, n: int) -> bool:
    raw = await r.hget(key, field)
    return raw is not None and int(raw) >= n


async def test_exported_counters_match_the_mix_exactly(
    redis_url: str, aredis: redis.asyncio.Redis, prefix: str, r: redis.Redis
) -> None:
    stream = f"{prefix}orders"
    await aredis.sadd(keys.STREAMS_INDEX, stream)
    try:
        await run_mix(redis_url, aredis, stream)
        registry = registry_of(ClusterCollector(lambda: collect(r, [stream])))
        text = generate_latest(registry).decode()
    finally:
        await aredis.srem(keys.STREAMS_INDEX, stream)
    fams = families(text)
    on = {"stream": stream, "group": "g"}
    total = "redrive_messages_processed_total"
    assert value(fams, total, outcome="succeeded", **on) == MIX["ok"] + MIX["flaky"]
    assert value(fams, total, outcome="retried", **on) == MIX["flaky"] + MIX["doomed"]
    assert value(fams, total, outcome="dead_lettered", **on) == 9
    dead = "redrive_messages_dead_lettered_total"
    assert value(fams, dead, reason="max_retries_exceeded", **on) == MIX["doomed"]
    assert value(fams, dead, reason="permanent_error", **on) == MIX["bad"]
    assert value(fams, dead, reason="poison", **on) == MIX["poison"]
    assert value(fams, "redrive_messages_received_total", **on) == RUNS
    assert value(fams, "redrive_handler_duration_seconds_count", **on) == RUNS
    assert value(fams, "redrive_retry_lateness_seconds_count", **on) == 10
    assert value(fams, "redrive_dlq_length_messages", stream=stream) == 9
    assert value(fams, "redrive_pending_messages", **on) == 0
    # The error ratio covers the window (60 s): every run of this test is inside it.
    assert value(fams, "redrive_handler_error_ratio", **on) == pytest.approx(FAILED / RUNS)


async def test_window_error_rate_and_per_second_series(
    redis_url: str, aredis: redis.asyncio.Redis, prefix: str, r: redis.Redis
) -> None:
    stream = f"{prefix}orders"
    await run_mix(redis_url, aredis, stream)
    group = collect(r, [stream], window=60).streams[0].groups[0]
    assert group.window.error_rate == pytest.approx(FAILED / RUNS)
    assert sum(group.window.runs) == RUNS and sum(group.window.failures) == FAILED
    assert group.window.totals["dead:poison"] == MIX["poison"]
    assert group.window.breakers == {"c1": "none"}  # breaker=None in this app
    # DLQ growth: the 9 dead letters of the run, all inside the 60 s window, per minute.
    assert collect(r, [stream], window=60).streams[0].dlq_growth_per_minute == 9


async def test_exposition_follows_naming_conventions(
    redis_url: str, aredis: redis.asyncio.Redis, prefix: str, r: redis.Redis
) -> None:
    stream = f"{prefix}orders"
    await run_mix(redis_url, aredis, stream)
    text = generate_latest(registry_of(ClusterCollector(lambda: collect(r, [stream]))))
    parsed = list(text_string_to_metric_families(text.decode()))
    assert parsed, "no metrics"
    for family in parsed:
        assert re.fullmatch(r"redrive_[a-z_]+", family.name), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        assert not re.search(r"_(ms|milliseconds|minutes)\b", family.name)
    # Redis 6.2 reports no lag: the gauge then has no sample rather than a false 0.
    # Every metric the Grafana dashboard queries is one the exporter produces.
    exported = {s.name for f in parsed for s in f.samples} | {f.name for f in parsed}
    queried = set(re.findall(r"redrive_[a-z_]+", GRAFANA.read_text()))
    assert queried and queried <= exported, queried - exported
    version = str((await aredis.info("server"))["redis_version"])
    lag = next(f for f in parsed if f.name == "redrive_group_lag_messages")
    assert (len(lag.samples) == 0) == version.startswith("6.")


async def test_worker_collector_serves_its_own_consumers(
    redis_url: str, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    await aredis.xadd(stream, {"data": '{"kind": "ok"}'})
    async with running(build_app(redis_url, stream), redis_url, consumer="local"):
        await until(lambda: _hget(aredis, keys.stats(stream, "g"), "succeeded", 1), 10)
        text = generate_latest(registry_of(WorkerCollector())).decode()
    fams = families(text)
    mine = {"stream": stream, "group": "g", "consumer": "local"}
    assert value(fams, "redrive_messages_processed_total", outcome="succeeded", **mine) == 1
    assert value(fams, "redrive_handler_duration_seconds_count", **mine) == 1


async def test_monitor_once_shows_the_collected_numbers(
    redis_url: str, aredis: redis.asyncio.Redis, prefix: str, r: redis.Redis
) -> None:
    stream = f"{prefix}orders"
    await run_mix(redis_url, aredis, stream)
    await aredis.xadd(stream, {"data": '{"kind": "ok"}'})  # unread: lag 1 on Redis 7
    _register()
    result = CliRunner().invoke(
        cli, ["--redis-url", redis_url, "monitor", "--once", "--stream", stream],
        env={"COLUMNS": "80"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    snap = collect(r, [stream]).streams[0]
    group = snap.groups[0]
    out = result.output
    assert max(len(line) for line in out.splitlines()) <= 80
    assert f"len {snap.length}" in out and f"DLQ {snap.dlq_length} " in out
    assert f"pend {group.pending} " in out
    assert f"lag {'?' if group.lag is None else group.lag} " in out
    assert f"retry {group.retry_scheduled}+{group.retry_ready} " in out
    assert f"{FAILED / RUNS:.1%}" in out
    assert "error_rate" in out  # 19 of 45 runs failed: an active alert
