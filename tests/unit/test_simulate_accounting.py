"""Duplicates are explained only by a fault whose window and consumers match."""

from __future__ import annotations

from redrive.simulate.accounting import explain
from redrive.simulate.chaos import FaultEvent
from redrive.simulate.report import percentile

KILL = FaultEvent("kill_worker", started=100.0, healed=101.0, consumers=("w1",))
REDIS = FaultEvent("kill_redis", started=200.0, healed=201.0, consumers=None)


def test_a_duplicate_inside_a_fault_window_of_its_consumer_is_explained() -> None:
    assert explain(99.5, ["w1", "w2"], [KILL], slack=1.0) == "kill_worker"


def test_a_duplicate_of_another_consumer_or_time_is_not() -> None:
    assert explain(99.5, ["w2"], [KILL], slack=1.0) is None
    assert explain(150.0, ["w1"], [KILL], slack=1.0) is None


def test_a_redis_fault_explains_duplicates_of_every_consumer() -> None:
    assert explain(200.5, ["w9"], [KILL, REDIS], slack=1.0) == "kill_redis"


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 99), percentile([], 50)) == (50, 99, None)
