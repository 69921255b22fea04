"""A worker frozen past the visibility timeout cannot settle entries it no longer owns.

Worker ``stalled`` is SIGSTOPped with a batch in hand (a GC pause, a VM migration).
Worker ``rescuer`` reclaims those entries once they are idle past the visibility timeout
and works on them slowly. When ``stalled`` is SIGCONTed its handlers finish and it tries
to ack: the fence (XPENDING owner check inside the ack script) rejects every one, the
rejection is counted in the group's ``fenced`` counter and logged as decision=fenced, and
the rescuer's outcome is the one that counts.
"""

from __future__ import annotations

import signal

import pytest
import redis

from tests.chaos.harness import (
    Outcome,
    Scenario,
    WorkerProcess,
    Workers,
    assert_no_loss,
    owned_by,
    produce,
    stats,
    wait_until,
)

pytestmark = pytest.mark.chaos

MESSAGES = 24
VISIBILITY = 1.0


def fence_rejections(worker: WorkerProcess) -> int:
    """How many outcomes ``worker`` logged as rejected by the fence (decision=fenced)."""
    return sum(
        int(rec.get("count", 1)) for rec in worker.records() if rec.get("decision") == "fenced"
    )


def test_stalled_worker_is_fenced_after_reclaim(
    r: redis.Redis, scenario: Scenario, workers: Workers
) -> None:
    # Arrange: the stalled worker holds a batch in flight when it freezes.
    produced = produce(r, scenario, ({"n": i} for i in range(MESSAGES)))
    stalled = workers.spawn("stalled", visibility=VISIBILITY, sleep=0.4, concurrency=4, prefetch=2)
    wait_until(lambda: r.hlen(scenario.ledger) >= 1, "a first success", alive=[stalled])
    stalled.signal(signal.SIGSTOP)
    frozen = owned_by(r, scenario, "stalled")
    assert frozen, "the stalled worker held nothing when it froze: the test proves nothing"

    # Act: the rescuer reclaims the frozen batch and holds it (slow handlers) while the
    # stalled worker wakes up and tries to ack it.
    rescuer = workers.spawn("rescuer", visibility=VISIBILITY, sleep=2.5, concurrency=32, prefetch=8)
    wait_until(
        lambda: frozen <= owned_by(r, scenario, "rescuer"),
        "the rescuer to reclaim the frozen batch",
        alive=[rescuer],
    )
    stalled.signal(signal.SIGCONT)
    wait_until(
        lambda: fence_rejections(stalled),
        "the stalled worker to log a fence rejection",
        alive=[stalled, rescuer],
    )
    wait_until(lambda: stats(r, scenario).get("fenced", 0) > 0, "fenced counter published")
    wait_until(
        lambda: Outcome.read(r, scenario).settled(produced),
        "every outcome",
        alive=[stalled, rescuer],
    )
    for worker in (stalled, rescuer):
        worker.signal(signal.SIGTERM)
    assert [worker.wait(15) for worker in (stalled, rescuer)] == [0, 0]

    # Assert: nothing lost, the frozen batch was handled by the rescuer, and every
    # rejected ack was counted.
    outcome = Outcome.read(r, scenario)
    assert_no_loss(outcome, produced, dead={})
    by_rescuer = {k.decode() for k in r.hkeys(f"{scenario.ledger}:rescuer")}
    assert frozen <= by_rescuer, "the rescuer did not handle the batch it reclaimed"
    counters = stats(r, scenario)
    assert counters["fenced"] == fence_rejections(stalled) > 0, counters
    assert fence_rejections(rescuer) == 0, "the rescuer's own outcomes were fenced"
    assert counters["reclaimed"] >= len(frozen), counters


def test_a_resumed_worker_does_not_run_buffered_entries_another_one_reclaimed(
    r: redis.Redis, scenario: Scenario, workers: Workers
) -> None:
    # Arrange: a slow worker with a read-ahead buffer freezes; its buffered entries, never
    # started, are reclaimed and handled by a fast rescuer.
    produced = produce(r, scenario, ({"n": i} for i in range(MESSAGES)))
    stalled = workers.spawn("stalled", visibility=VISIBILITY, sleep=0.3, concurrency=2, prefetch=6)
    wait_until(lambda: r.hlen(scenario.ledger) >= 1, "a first success", alive=[stalled])
    stalled.signal(signal.SIGSTOP)
    frozen = owned_by(r, scenario, "stalled")
    assert len(frozen) > 2, "nothing buffered beyond the running handlers: proves nothing"
    ran_before = set(r.hkeys(f"{scenario.ledger}:stalled"))
    rescuer = workers.spawn("rescuer", visibility=VISIBILITY, sleep=0.0, concurrency=8, prefetch=8)
    wait_until(
        lambda: Outcome.read(r, scenario).settled(produced),
        "the rescuer to handle everything",
        alive=[rescuer],
    )

    # Act: the stalled worker resumes with its stale buffer.
    stalled.signal(signal.SIGCONT)
    # Whichever runs first on resume notices: the lane about to start a long-held entry,
    # or the lease renewal.
    noticed = ("reclaimed by another consumer", "lease lost on")
    wait_until(
        lambda: any(any(n in rec.get("msg", "") for n in noticed) for rec in stalled.records()),
        "the resumed worker to notice",
        alive=[stalled, rescuer],
    )
    for worker in (stalled, rescuer):
        worker.signal(signal.SIGTERM)
    assert [worker.wait(15) for worker in (stalled, rescuer)] == [0, 0]

    # Assert: after the resume the stalled worker finished only the runs the stop had
    # interrupted (at most its 2 lanes); the buffered entries were dropped, not run.
    # (Runs it had finished before the stop, ack not yet sent, are at-least-once's price.)
    outcome = Outcome.read(r, scenario)
    assert_no_loss(outcome, produced, dead={})
    ran_after = set(r.hkeys(f"{scenario.ledger}:stalled")) - ran_before
    assert len(ran_after) <= 2, (sorted(ran_after), outcome.report(produced))
