"""Pure parts of supervised jobs: the spec's checks, the relapse verdict, delete runs,
and the per-hour counts of a failure group."""

from __future__ import annotations

import pytest

from redrive.dlq.canary import Canary
from redrive.dlq.jobs import JobSpec
from redrive.dlq.jobs_runner import _runs
from redrive.dlq.jobs_watch import Relapses
from redrive.dlq.model import DeadLetter
from redrive.dlq.stats import HOUR_MS, MAX_HOURS, FingerprintStats
from redrive.errors import ConfigError

T0 = 1_700_000_000_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "archive"}, "job action 'archive'"),
        ({"snapshot": "a b"}, "not a snapshot id"),
        ({"rate": 0}, "rate=0"),
        ({"rate": float("inf")}, "rate=inf"),
        ({"canary": -1}, "canary >= 0"),
        ({"to": "dlq:{x}"}, "replay into a stream"),
        ({"action": "delete", "to": "other"}, "no target and no canary"),
        ({"relapse_share": 0}, "relapse_share"),
    ],
)
def test_a_bad_spec_is_refused_before_any_io(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"action": "replay", "snapshot": "abc", **kwargs}
    with pytest.raises(ConfigError, match=message):
        JobSpec(**args)  # type: ignore[arg-type]


def _relapses(n: int, moved_every_ms: int = 100) -> Relapses:
    watch = Relapses({}, share=0.5, least=3)
    for i in range(n):
        watch.track(Canary(f"9-{i}", "s", "g", f"5-{i}", f"1-{i}"), now_ms=T0 + i * moved_every_ms)
    return watch


def _relapse(watch: Relapses, i: int, after_ms: int) -> None:
    seen = watch.replayed[("s", f"1-{i}")]
    seen.relapsed_ms = seen.moved_ms + after_ms


def test_no_relapse_no_verdict() -> None:
    watch = _relapses(200)
    assert watch.verdict(now_ms=T0 + 60_000) is None


def test_most_of_the_settled_entries_relapsing_pauses_the_job() -> None:
    watch = _relapses(200)  # one replayed every 100 ms over 20 s
    for i in range(0, 60):  # the first 60 all died again, each 5 s after its replay
        _relapse(watch, i, 5_000)
    now = T0 + 11_000  # entries 0..60 are 5 s old: the settled ones
    why = watch.verdict(now_ms=now)
    assert why is not None and "60 of the last 61" in why


def test_the_newest_replays_do_not_dilute_the_share() -> None:
    # 30 settled, 20 of them dead again; 170 newer ones that had no time to fail yet.
    watch = _relapses(200)
    for i in range(0, 20):
        _relapse(watch, i, 2_900)
    assert watch.verdict(now_ms=T0 + 5_900) is not None


def test_a_few_relapses_among_many_successes_do_not_pause() -> None:
    watch = _relapses(200)
    for i in (3, 50, 90, 150):
        _relapse(watch, i, 1_000)
    assert watch.verdict(now_ms=T0 + 30_000) is None


def test_delete_runs_keep_the_bound_order() -> None:
    refs = ["a@1-0", "a@2-0", "b@1-0", "a@3-0"]
    assert _runs(refs) == [("a", ["1-0", "2-0"]), ("b", ["1-0"]), ("a", ["3-0"])]


def _dead(ms: int) -> DeadLetter:
    return DeadLetter("s", "dlq:{s}", f"{ms}-0", ((b"redrive-dead-ms", str(ms).encode()),))


def test_a_fingerprint_counts_per_hour_with_the_gaps_filled() -> None:
    group = FingerprintStats("fp", "E", "m")
    for ms in (T0, T0 + 10, T0 + 2 * HOUR_MS + 5):
        group.add(_dead(ms))
    hour = T0 - T0 % HOUR_MS
    assert group.per_hour() == [(hour, 2), (hour + HOUR_MS, 0), (hour + 2 * HOUR_MS, 1)]
    assert group.to_json()["per_hour"] == [[hour, 2], [hour + 2 * HOUR_MS, 1]]
    assert len(group.per_hour(T0 - 400 * 24 * HOUR_MS, T0)) == MAX_HOURS
    assert group.per_hour(T0, T0 - HOUR_MS) == []
