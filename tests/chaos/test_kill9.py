"""kill -9 in the middle of a batch: the entries the dead worker held are not lost.

The handler sleeps a little per message so a batch is always in flight. When the ledger
shows some but not all messages done, the worker is SIGKILLed: no shutdown, no ack flush.
A restart under the same name re-reads its own pending entries (the visibility timeout is
long, so reclaiming cannot be what saves them); a worker under a new name reclaims them
once they are idle past a short visibility timeout.
"""

from __future__ import annotations

import signal

import pytest
import redis

from tests.chaos.harness import (
    Outcome,
    Scenario,
    Workers,
    assert_no_loss,
    owned_by,
    produce,
    wait_until,
)

pytestmark = pytest.mark.chaos

MESSAGES = 80
OPTIONS = {"sleep": 0.05, "concurrency": 4, "prefetch": 8}


@pytest.mark.parametrize(
    ("successor", "visibility"),
    [("w1", 60.0), ("w2", 1.0)],
    ids=["restart-same-name", "reclaim-by-new-name"],
)
def test_kill9_mid_batch_loses_nothing(
    r: redis.Redis, scenario: Scenario, workers: Workers, successor: str, visibility: float
) -> None:
    # Arrange: a backlog and a worker chewing through it.
    produced = produce(r, scenario, ({"n": i} for i in range(MESSAGES)))
    victim = workers.spawn("w1", visibility=visibility, **OPTIONS)
    wait_until(lambda: r.hlen(scenario.ledger) >= 20, "20 successes", alive=[victim])

    # Act: SIGKILL mid-batch, then a successor takes over.
    victim.signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    done_at_kill = r.hlen(scenario.ledger)
    orphans = owned_by(r, scenario, "w1")
    assert done_at_kill < MESSAGES, "the kill landed after the batch: nothing was in flight"
    assert orphans, "the dead worker held no pending entries: the kill proves nothing"

    heir = workers.spawn(successor, visibility=visibility, **OPTIONS)
    wait_until(lambda: Outcome.read(r, scenario).settled(produced), "every outcome", alive=[heir])
    heir.signal(signal.SIGTERM)
    assert heir.wait(15) == 0

    # Assert: every message succeeded, the orphans included; nothing pending anywhere.
    outcome = Outcome.read(r, scenario)
    assert_no_loss(outcome, produced, dead={})
    assert orphans <= outcome.succeeded.keys(), outcome.report(produced)
    assert not owned_by(r, scenario, "w1"), "the killed consumer still owns entries"
