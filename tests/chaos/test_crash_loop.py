"""A message that kills its worker on every delivery ends in the DLQ, not in a crash loop.

The handler calls ``os._exit(1)`` whenever it sees the killer message. A supervisor (this
test) restarts the worker each time it dies, until every message has an outcome or the
deadline passes. After ``max_deliveries`` deliveries without an outcome the killer is
dead-lettered with ``redrive-reason = max_deliveries_exceeded`` before it runs again.

The other messages must all succeed. Every entry pending alongside the killer is
re-delivered with it on each restart, so its *delivery* counter climbs just as fast; the
runtime therefore runs re-delivered entries (suspects) one at a time and counts their
*runs*, so only the killer reaches the limit.
"""

from __future__ import annotations

import itertools
import signal
import time

import pytest
import redis

from tests.chaos.harness import Outcome, Scenario, WorkerProcess, Workers, assert_no_loss, produce

pytestmark = pytest.mark.chaos

MESSAGES = 20
KILLER = 10
MAX_DELIVERIES = 3
DEADLINE = 30.0


def supervise(
    r: redis.Redis,
    scenario: Scenario,
    workers: Workers,
    produced: list[str],
    *,
    fresh_names: bool,
    **options: object,
) -> tuple[WorkerProcess, list[int]]:
    """Keep one worker running until every message has an outcome, restarting it when it
    dies (as ``w`` again, or as ``w1``, ``w2``, ...); return it and the exit codes."""
    names = (f"w{i}" for i in itertools.count()) if fresh_names else itertools.repeat("w")
    deaths: list[int] = []
    worker = workers.spawn(next(names), **options)
    deadline = time.monotonic() + DEADLINE
    while not Outcome.read(r, scenario).settled(produced):
        assert time.monotonic() < deadline, (
            f"no outcome for every message after {DEADLINE}s and {len(deaths)} crashes: "
            + Outcome.read(r, scenario).report(produced)
        )
        if not worker.alive:
            deaths.append(worker.wait(0))
            worker = workers.spawn(next(names), **options)
        time.sleep(0.02)
    return worker, deaths


@pytest.mark.parametrize(
    ("fresh_names", "visibility"),
    [(False, 60.0), (True, 1.0)],
    ids=["restart-same-name", "restart-new-names"],
)
def test_killer_message_is_dead_lettered_after_max_deliveries(
    r: redis.Redis, scenario: Scenario, workers: Workers, fresh_names: bool, visibility: float
) -> None:
    # Arrange: one killer among ordinary messages.
    bodies = [{"n": i, "crash": i == KILLER} for i in range(MESSAGES)]
    produced = produce(r, scenario, bodies)
    killer = produced[KILLER]

    # Act: supervise a worker through its crash loop until every message has an outcome.
    worker, deaths = supervise(
        r, scenario, workers, produced, fresh_names=fresh_names,
        visibility=visibility, max_deliveries=MAX_DELIVERIES, sleep=0.02,
    )  # fmt: skip
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0

    # Assert: the killer crashed exactly max_deliveries workers, then went to the DLQ
    # without running again; every other message has an outcome, none is pending.
    outcome = Outcome.read(r, scenario)
    summary = outcome.report(produced)
    assert deaths == [1] * MAX_DELIVERIES, summary
    assert outcome.dead.get(killer) == "max_deliveries_exceeded", summary
    assert killer not in outcome.succeeded, summary
    assert outcome.settled(produced), summary
    assert outcome.succeeded.keys() <= set(produced), summary

    # No collateral damage: entries that sat in the crashed worker's buffer are re-run in
    # isolation (as suspects), so only the killer's own runs count towards the limit.
    collateral = sorted(outcome.dead.keys() - {killer})
    assert not collateral, f"innocent messages dead-lettered with the killer: {summary}"
    assert_no_loss(outcome, produced, dead={killer: "max_deliveries_exceeded"})
