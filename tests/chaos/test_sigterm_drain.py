"""SIGTERM mid-load: the worker drains, exits 0 within its shutdown timeout, loses nothing.

With a shutdown timeout longer than the work in hand, the worker finishes every entry it
holds and flushes the acks: it leaves nothing pending under its name. With a timeout
shorter than a handler, it still exits 0 on time; the unfinished entry stays pending
under its name and a restart under that name delivers it again.
"""

from __future__ import annotations

import signal
import time

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
    wait_until,
)

pytestmark = pytest.mark.chaos

OPTIONS = {"sleep": 0.1, "concurrency": 4, "prefetch": 8}


def terminate(worker: WorkerProcess, budget: float) -> tuple[int, float]:
    """SIGTERM ``worker``; return its exit code and how many seconds it took to exit."""
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    rc = worker.wait(budget)
    return rc, time.monotonic() - started


def finish_backlog(
    r: redis.Redis, scenario: Scenario, workers: Workers, produced: list[str]
) -> None:
    """Restart ``w1`` until every message has an outcome, then stop it cleanly."""
    heir = workers.spawn("w1", sleep_cap=0.1, **OPTIONS)
    wait_until(lambda: Outcome.read(r, scenario).settled(produced), "every outcome", alive=[heir])
    assert terminate(heir, 15)[0] == 0


def test_sigterm_drains_in_flight_work_and_exits_0(
    r: redis.Redis, scenario: Scenario, workers: Workers
) -> None:
    # Arrange: a worker in the middle of a backlog, holding a batch.
    produced = produce(r, scenario, ({"n": i} for i in range(60)))
    worker = workers.spawn("w1", shutdown_timeout=5.0, **OPTIONS)
    wait_until(lambda: r.hlen(scenario.ledger) >= 10, "10 successes", alive=[worker])
    held = owned_by(r, scenario, "w1")
    assert held, "the worker held nothing at SIGTERM: the test proves nothing"

    # Act: SIGTERM.
    rc, took = terminate(worker, budget=15)

    # Assert: a clean, timely exit that finished what it held and left nothing pending.
    assert rc == 0, worker.tail()
    assert took < 5.0, f"exit took {took:.1f}s, above the 5s shutdown timeout"
    assert owned_by(r, scenario, "w1") == set(), "the drained worker left entries pending"
    done = {k.decode() for k in r.hkeys(scenario.ledger)}
    assert held <= done, f"{len(held - done)} entries held at SIGTERM were not finished"
    assert len(done) < len(produced), "the backlog was gone before SIGTERM"

    finish_backlog(r, scenario, workers, produced)
    assert_no_loss(Outcome.read(r, scenario), produced, dead={})


def test_sigterm_past_the_shutdown_timeout_leaves_the_entry_for_a_restart(
    r: redis.Redis, scenario: Scenario, workers: Workers
) -> None:
    # Arrange: one handler that takes far longer than the shutdown timeout.
    produced = produce(r, scenario, [{"n": 0, "sleep": 60}, *({"n": i} for i in range(1, 8))])
    slow = produced[0]
    worker = workers.spawn("w1", shutdown_timeout=0.5, **OPTIONS)
    wait_until(
        lambda: (
            r.hlen(scenario.ledger) == len(produced) - 1 and slow in owned_by(r, scenario, "w1")
        ),
        "every fast message done while the slow one runs",
        alive=[worker],
    )

    # Act: SIGTERM while the slow handler runs.
    rc, took = terminate(worker, budget=15)

    # Assert: exit 0 close to the timeout, the slow entry still pending under the worker's
    # name; a restart under that name delivers it again and nothing is lost.
    assert rc == 0, worker.tail()
    assert took < 0.5 + 2.0, f"exit took {took:.1f}s for a 0.5s shutdown timeout"
    assert owned_by(r, scenario, "w1") == {slow}
    assert not r.hexists(scenario.ledger, slow)

    finish_backlog(r, scenario, workers, produced)
    assert_no_loss(Outcome.read(r, scenario), produced, dead={})
