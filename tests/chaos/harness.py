"""Chaos harness: worker subprocesses, polling with deadlines, and the no-loss ledger check.

A chaos test produces numbered messages, runs ``redrive worker`` subprocesses of the
ledger app (``tests/chaos/apps/ledger.py``) and hurts them with real signals. Every
message must end exactly one way: succeeded (in the ledger) or dead-lettered (in
``dlq:{S}``), with nothing left pending or scheduled. Duplicates (ledger counts above 1)
are allowed — delivery is at-least-once — and are reported, not hidden.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from redrive import process
from redrive.store.keys import StreamKeys

#: Re-runs by one process of a delivery it had finished, allowed in a simulator chaos run.
#: The bugs this check was written for (a reconnect's re-read running held entries, an
#: entry waiting for a busy claim re-read as a stranger's) made 10-16 a run. A rarer one
#: is still open: under load, now and then a process succeeds a message a second time
#: after a SIGSTOP bounced the entry through another consumer (1-3 in a loaded suite,
#: up to 7 beside a CPU busy-loop; as often on the code before issue 15's last change).
#: It is counted and explained by a fault, never a loss or a double effect.
RERUN_TOLERANCE = 4


ROOT = Path(__file__).resolve().parents[2]  # the project root: ``tests.chaos.apps`` imports
APP = "tests.chaos.apps.ledger:app"
T = TypeVar("T")


def wait_until(
    probe: Callable[[], T],
    what: str,
    *,
    timeout: float = 15.0,
    every: float = 0.02,
    alive: Iterable[WorkerProcess] = (),
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline.

    Workers in ``alive`` must keep running meanwhile: one that exits fails the wait at
    once, with the end of its log, instead of a timeout much later.
    """
    deadline = time.monotonic() + timeout
    watched = list(alive)
    while True:
        value = probe()
        if value:
            return value
        for worker in watched:
            assert worker.alive, (
                f"{worker.consumer} exited (rc={worker.proc.returncode}) while waiting for "
                f"{what}:\n{worker.tail()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(every)


@dataclass(frozen=True)
class Scenario:
    """The keys of one chaos test: a private stream, group and ledger under ``prefix``."""

    prefix: str
    url: str
    group: str = "chaos"

    @property
    def keys(self) -> StreamKeys:
        """Stream, retry, schedule, dead-letter and stats keys of the group."""
        return StreamKeys.of(f"{self.prefix}orders", self.group)

    @property
    def ledger(self) -> str:
        """Hash of message id -> number of successful handler runs."""
        return f"{self.prefix}ledger"

    def env(self, consumer: str, **options: object) -> dict[str, str]:
        """Environment of a worker subprocess (``CHAOS_*``, see the ledger app)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAOS_", "REDRIVE_"))}
        env.update(
            CHAOS_REDIS_URL=self.url,
            CHAOS_STREAM=self.keys.stream,
            CHAOS_GROUP=self.group,
            CHAOS_LEDGER=self.ledger,
            CHAOS_WORKER=consumer,
            PYTHONFAULTHANDLER="1",  # a hung worker dumps its stacks on SIGABRT
        )
        env.update({f"CHAOS_{k.upper()}": str(v) for k, v in options.items()})
        return env


class WorkerProcess(process.WorkerProcess):
    """One ``redrive worker`` subprocess of the ledger app, JSON logs in a file of its own."""

    def __init__(self, scenario: Scenario, consumer: str, log: Path, **options: Any) -> None:
        shutdown = options.pop("shutdown_timeout", 10.0)
        argv = process.worker_argv(
            scenario.url, APP, consumer, log_format="json", shutdown_timeout=shutdown
        )
        super().__init__(
            argv, consumer=consumer, log=log, env=scenario.env(consumer, **options), cwd=ROOT
        )

    def wait(self, timeout: float) -> int:
        """Its exit code, waiting at most ``timeout`` seconds.

        A worker still running at the deadline is hung: SIGABRT makes faulthandler dump
        every thread's stack into its log, and the failure shows it.
        """
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGABRT)
            self.proc.wait(10)
            raise AssertionError(
                f"{self.consumer} did not exit within {timeout}s:\n{self.tail(80)}"
            ) from None

    def close(self) -> None:
        """Kill it by pid if still running (SIGCONT first: a stopped process) and reap it."""
        self.kill()


class Workers:
    """Spawns workers for one test and guarantees they are all gone at its end."""

    def __init__(self, scenario: Scenario, log_dir: Path) -> None:
        self.scenario = scenario
        self.log_dir = log_dir
        self.spawned: list[WorkerProcess] = []

    def spawn(self, consumer: str, **options: Any) -> WorkerProcess:
        """Start a worker named ``consumer``; ``options`` become ``CHAOS_*`` settings."""
        n = len(self.spawned)
        worker = WorkerProcess(
            self.scenario, consumer, self.log_dir / f"{n:02d}-{consumer}.log", **options
        )
        self.spawned.append(worker)
        return worker

    def ready(self, worker: WorkerProcess, timeout: float = 15.0) -> None:
        """Wait until ``worker`` has registered as a consumer of the group."""

        def registered() -> bool:
            assert worker.alive, f"{worker.consumer} exited early:\n{worker.tail()}"
            return any(
                r.get("msg", "").startswith(f"worker {worker.consumer} consuming")
                for r in worker.records()
            )

        wait_until(registered, f"{worker.consumer} to start", timeout=timeout)

    def close(self) -> None:
        """Kill every worker still running; print their logs' ends for the report."""
        for worker in self.spawned:
            worker.close()
            print(f"--- {worker.consumer} (pid {worker.pid}) rc={worker.proc.returncode}")
            print(worker.tail())


def produce(r: redis.Redis, scenario: Scenario, bodies: Iterable[dict[str, Any]]) -> list[str]:
    """XADD one JSON message per body; return the entry ids in order."""
    pipe = r.pipeline(transaction=False)
    for body in bodies:
        pipe.xadd(scenario.keys.stream, {"data": json.dumps(body)})
    return [entry_id.decode() for entry_id in pipe.execute()]


def owned_by(r: redis.Redis, scenario: Scenario, consumer: str) -> set[str]:
    """Ids of source-stream entries pending under ``consumer``."""
    rows = r.xpending_range(
        scenario.keys.stream, scenario.group, min="-", max="+", count=10_000,
        consumername=consumer,
    )  # fmt: skip
    return {row["message_id"].decode() for row in rows}


def stats(r: redis.Redis, scenario: Scenario) -> dict[str, int]:
    """The group's published counters (``redrive:stats:{S}:<group>``)."""
    raw = r.hgetall(scenario.keys.stats)
    return {k.decode(): int(v) for k, v in raw.items()}


def _pending(r: redis.Redis, scenario: Scenario) -> int | None:
    """Entries the group has delivered but not settled, on the source and retry stream."""
    total = 0
    for stream in (scenario.keys.stream, scenario.keys.retry):
        try:
            total += int(r.xpending(stream, scenario.group)["pending"])
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return None  # the first worker has not created the group yet
    return total


@dataclass(frozen=True)
class Outcome:
    """Where every message of a scenario is right now."""

    succeeded: dict[str, int]  # message id -> successful handler runs
    dead: dict[str, str] = field(default_factory=dict)  # message id -> redrive-reason
    pending: int | None = 0  # XPENDING of the group on both streams; None: no group yet
    scheduled: int = 0  # retries waiting in the schedule

    @classmethod
    def read(cls, r: redis.Redis, scenario: Scenario) -> Outcome:
        """Read the ledger, the dead-letter stream, the pending lists and the schedule."""
        keys = scenario.keys
        ledger = {k.decode(): int(v) for k, v in r.hgetall(scenario.ledger).items()}
        dead = {
            fields[b"redrive-origin-id"].decode(): fields[b"redrive-reason"].decode()
            for _, fields in r.xrange(keys.dlq)
        }
        return cls(ledger, dead, _pending(r, scenario), int(r.zcard(keys.due)))

    def settled(self, produced: Iterable[str]) -> bool:
        """Every message has an outcome and nothing is left pending or scheduled."""
        done = self.succeeded.keys() | self.dead.keys()
        return done >= set(produced) and self.pending == 0 and not self.scheduled

    @property
    def duplicates(self) -> dict[str, int]:
        """Messages whose handler succeeded more than once (at-least-once at work)."""
        return {k: v for k, v in self.succeeded.items() if v > 1}

    def report(self, produced: Iterable[str]) -> str:
        """A one-paragraph summary for assertion messages."""
        ids = set(produced)
        missing = ids - self.succeeded.keys() - self.dead.keys()
        return (
            f"{len(ids)} produced: {len(self.succeeded)} succeeded, {len(self.dead)} dead "
            f"{sorted(set(self.dead.values()))}, {len(missing)} lost {sorted(missing)[:5]}, "
            f"{self.pending} pending, {self.scheduled} scheduled, "
            f"{len(self.duplicates)} duplicated (at-least-once: allowed)"
        )


def assert_no_loss(outcome: Outcome, produced: list[str], dead: dict[str, str]) -> None:
    """The invariant: each message succeeded or is dead exactly as ``dead`` says; none pending."""
    summary = outcome.report(produced)
    expected_ok = set(produced) - dead.keys()
    assert outcome.succeeded.keys() - set(produced) == set(), f"unknown ids in ledger: {summary}"
    assert outcome.dead == dead, f"dead letters differ from {dead}: {summary}"
    assert set(outcome.succeeded) == expected_ok, f"not all succeeded: {summary}"
    assert outcome.pending == 0, f"entries left pending: {summary}"
    assert outcome.scheduled == 0, f"retries left scheduled: {summary}"
    print(f"outcome: {summary}")  # duplicates are allowed but shown (pytest -rP)
