"""``redrive demo``: the e-commerce story end to end, ending in a reconciliation.

The demo's keys live under its own prefix (:mod:`redrive.demo.slot`): its streams are
``demo:ecommerce:orders`` and ``demo:ecommerce:payments`` (``demo2:``… while another demo
runs on the same server), never the names an application uses.

1. claim a prefix and delete the demo's own keys under it (its two streams and their
   retry, DLQ, stats, audit and ledger keys — never anything else);
2. start worker processes running :mod:`redrive.examples.ecommerce` with a short retry
   delay;
3. publish seeded traffic (:mod:`redrive.examples.ecommerce_traffic`): good orders and
   payments mixed with malformed JSON, missing fields, wrong types, timeouts and declines;
4. wait (bounded) until every message is settled, reporting progress to an observer;
5. replay (:mod:`redrive.dlq`) the dead letters of the gateway outage — the timeouts that
   exhausted their retries — now that the gateway is back, and wait again: they succeed;
6. stop the workers with SIGTERM (they drain and exit 0);
7. reconcile (:mod:`redrive.verify.reconcile`): produced = succeeded + dead + pending + **lost**,
   and lost must be 0.

Example::

    report = run_demo(DemoConfig(redis_url="redis://localhost:6379/0", total=300))
    assert report.lost == 0
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from redrive import dlq
from redrive.demo.slot import DemoSlot
from redrive.demo.workers import WorkerPool
from redrive.errors import ConfigError, RedriveError
from redrive.examples.ecommerce import STREAMS, ledger_key
from redrive.examples.ecommerce_traffic import StreamTraffic, plan_traffic
from redrive.runtime.publish import publish_sync
from redrive.store import keys
from redrive.store.connection import describe_error, redact_url, sync_client
from redrive.verify.reconcile import StreamReport, read_ledger, reconcile

POLL_SECONDS = 0.1


class DemoError(RedriveError):
    """The demo could not run to its end (a worker died, Redis went away)."""


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """How big and how fast the demo runs; ``deadline`` bounds the wait in seconds."""

    redis_url: str
    total: int = 3000
    seed: int = 0
    workers: int = 2
    base_delay: float = 0.2
    deadline: float = 45.0
    replay: bool = True

    def __post_init__(self) -> None:
        if self.total < 2:
            raise ConfigError(f"total={self.total}: publish at least 2 messages")
        if not 1 <= self.workers <= 16:
            raise ConfigError(f"workers={self.workers}: use 1 to 16 worker processes")
        if not 0 <= self.base_delay <= 10:
            raise ConfigError(f"base_delay={self.base_delay}: use 0 to 10 seconds")
        if self.deadline <= 0:
            raise ConfigError(f"deadline={self.deadline}: use a number of seconds > 0")


@dataclass(frozen=True, slots=True)
class StreamProgress:
    """How far one stream is: messages produced and settled (succeeded or dead) so far."""

    stream: str
    produced: int
    settled: int


class DemoObserver(Protocol):
    """What the demo tells its audience while it runs.

    The CLI's progress bars are one observer; the live dashboard (to come) is meant to
    be another, fed by the same calls, so ``run_demo`` itself need not change for it.
    """

    def phase(self, text: str) -> None:
        """A new step began (``"publishing"``, ``"stopping workers"``…)."""

    def progress(self, streams: list[StreamProgress], elapsed: float) -> None:
        """Called about every ``POLL_SECONDS`` while waiting for messages to settle."""


class QuietObserver:
    """An observer that shows nothing (``--json`` and tests)."""

    def phase(self, text: str) -> None:
        """Ignore the phase."""

    def progress(self, streams: list[StreamProgress], elapsed: float) -> None:
        """Ignore the progress."""


@dataclass(frozen=True, slots=True)
class DemoReport:
    """The outcome of a demo run: one reconciliation per stream, plus how it went."""

    streams: tuple[StreamReport, ...]
    expected: dict[str, dict[str, int]]
    seconds: float
    settled: bool
    worker_exit_codes: tuple[int | None, ...] = field(default=())
    replayed: int = 0
    prefix: str = ""

    @property
    def lost(self) -> int:
        """Messages unaccounted for, all streams together; must be 0."""
        return sum(s.lost for s in self.streams)

    @property
    def matches_plan(self) -> bool:
        """True if every stream's outcomes are exactly those the traffic plan predicts."""
        return all(_outcomes(s) == self.expected.get(s.stream) for s in self.streams)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole report."""
        return {
            "lost": self.lost,
            "prefix": self.prefix,
            "settled": self.settled,
            "matches_plan": self.matches_plan,
            "seconds": round(self.seconds, 3),
            "worker_exit_codes": list(self.worker_exit_codes),
            "replayed": self.replayed,
            "expected": self.expected,
            "streams": [s.to_json() for s in self.streams],
        }


def _outcomes(report: StreamReport) -> dict[str, int]:
    out = {"succeeded": report.succeeded, **report.dead}
    return {k: v for k, v in sorted(out.items()) if v}


def demo_keys(stream: str, group: str) -> list[str]:
    """Every key the demo writes for ``stream`` (prefixed): the only keys it ever deletes."""
    k = keys.StreamKeys.of(stream, group)
    metrics = keys.metrics(stream, group)  # the dashboard's per-second history
    audit = keys.audit_trail(stream)  # the replay's per-entry records
    return [k.stream, k.retry, k.due, k.dlq, k.stats, k.starts, ledger_key(stream), metrics,
            audit, keys.dlq_retention(stream)]  # fmt: skip


def demo_streams(prefix: str) -> list[tuple[str, str]]:
    """The demo's (stream, group) pairs under ``prefix``."""
    return [(prefix + stream, group) for stream, group in STREAMS]


class DemoSession:
    """The steps of one demo run over one Redis connection.

    ``run_demo`` calls them in order; the replay stage reuses ``wait_settled`` after
    ``replay_outage``.
    """

    def __init__(self, config: DemoConfig, observer: DemoObserver, slot: DemoSlot) -> None:
        self.config = config
        self.observer = observer
        self.slot = slot
        self.client: redis.Redis = sync_client(config.redis_url)
        self.streams = demo_streams(slot.prefix)
        self.plans: list[StreamTraffic] = plan_traffic(config.total, config.seed)
        self.produced: dict[str, list[str]] = {}
        self.pool = WorkerPool(
            config.redis_url, seed=config.seed, base_delay=config.base_delay, prefix=slot.prefix
        )
        self.started = time.monotonic()
        self.replayed = 0

    def close(self) -> None:
        """Kill workers still running (after an error) and close the connection."""
        self.pool.kill()
        self.client.close()

    def reset(self) -> None:
        """Delete the demo's own keys (one DEL per stream: its keys share a hash slot).

        Keys under the prefix that the demo did not create (no ownership marker) are
        someone else's: the run stops rather than delete them.
        """
        if not self.slot.owned():
            for stream, group in self.streams:
                if self.client.exists(*demo_keys(stream, group)):
                    raise DemoError(
                        f"{stream} exists but was not created by redrive demo: "
                        "refusing to delete it (rename it, or run the demo on another server)"
                    )
            self.slot.mark_owned()
        for stream, group in self.streams:
            self.client.delete(*demo_keys(stream, group))

    def start_workers(self) -> None:
        """Start ``config.workers`` worker processes."""
        self.observer.phase(f"starting {self.config.workers} workers")
        self.pool.start(self.config.workers)

    def publish(self) -> None:
        """Publish the planned traffic (pipelined, 500 per round trip)."""
        self.observer.phase(f"publishing {self.config.total} messages")
        for plan in self.plans:
            stream = self.slot.prefix + plan.stream
            self.produced[stream] = publish_sync(self.client, stream, plan.bodies)

    def wait_settled(self) -> bool:
        """Poll until every message is settled or the deadline passes; True if settled."""
        self.observer.phase("processing")
        deadline = time.monotonic() + self.config.deadline
        while True:
            progress, quiet = self._poll()
            self.observer.progress(progress, time.monotonic() - self.started)
            if quiet and all(p.settled >= p.produced for p in progress):
                return True
            if time.monotonic() >= deadline:
                return False
            dead = self.pool.dead_worker()
            if dead is not None:
                raise DemoError(dead)
            time.sleep(POLL_SECONDS)

    def _poll(self) -> tuple[list[StreamProgress], bool]:
        pipe = self.client.pipeline(transaction=False)
        for stream, group in self.streams:
            k = keys.StreamKeys.of(stream, group)
            pipe.hlen(ledger_key(stream))
            pipe.xlen(k.dlq)
            pipe.xlen(k.retry)
            pipe.zcard(k.due)
            pipe.xpending(stream, group)
        # NOGROUP until a worker has created the group: that counts as not settled.
        replies = pipe.execute(raise_on_error=False)
        progress: list[StreamProgress] = []
        quiet = True
        for i, (stream, _) in enumerate(self.streams):
            ledger, dead, retry, due, pel = replies[i * 5 : i * 5 + 5]
            progress.append(StreamProgress(stream, len(self.produced[stream]), ledger + dead))
            idle = isinstance(pel, dict) and not pel["pending"]
            quiet = quiet and idle and not retry and not due
        return progress, quiet

    def replay_outage(self) -> int:
        """Replay the dead letters the gateway outage left (timeouts past their retries).

        The operator's move once the dependency is back: one filter, each entry moved
        atomically to its group's retry stream with a fresh attempt budget.
        """
        self.observer.phase("replaying the gateway outage's dead letters")
        flt = dlq.Filter(
            streams=tuple(stream for stream, _ in self.streams),
            reason="max_retries_exceeded",
            error_type="TimeoutError",
        )
        options = dlq.ReplayOptions(note="demo: the gateway is back", by="redrive demo")

        async def run() -> int:
            client = dlq.connect(self.config.redis_url)
            try:
                return len((await dlq.replay(client, flt, options)).moved)
            finally:
                await client.aclose()

        self.replayed = asyncio.run(run())
        return self.replayed

    def stop_workers(self) -> tuple[int | None, ...]:
        """SIGTERM every worker; they finish in-flight work, flush and exit 0."""
        self.observer.phase("stopping workers")
        return self.pool.stop()

    def report(self, *, settled: bool, exit_codes: tuple[int | None, ...]) -> DemoReport:
        """Reconcile every stream against what was produced."""
        self.observer.phase("reconciling")
        streams = tuple(
            reconcile(
                self.client,
                stream,
                group,
                self.produced[stream],
                read_ledger(self.client, ledger_key(stream)),
            )
            for stream, group in self.streams
        )
        return DemoReport(
            streams=streams,
            expected=_expected(self.plans, self.slot.prefix, replayed=self.config.replay),
            replayed=self.replayed,
            prefix=self.slot.prefix,
            seconds=time.monotonic() - self.started,
            settled=settled,
            worker_exit_codes=exit_codes,
        )


def _expected(
    plans: list[StreamTraffic], prefix: str, *, replayed: bool
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for plan in plans:
        expected = plan.expected()
        if replayed:  # the outage's timeouts are replayed once the gateway is back
            outage = plan.kinds.get("timeout_exhausted", 0)
            expected["max_retries_exceeded"] -= outage
            expected["succeeded"] += outage
        out[prefix + plan.stream] = {k: v for k, v in sorted(expected.items()) if v}
    return out


def run_demo(
    config: DemoConfig, observer: DemoObserver | None = None, slot: DemoSlot | None = None
) -> DemoReport:
    """Run the whole demo (see the module docstring) and return its report.

    ``slot`` is a prefix the caller already claimed (the CLI does, to show the streams'
    names before the run); without it the run claims the first free one itself.
    """
    try:
        if slot is not None:
            return _run(config, observer, slot)
        client = sync_client(config.redis_url)
        try:
            with DemoSlot(client) as own:
                return _run(config, observer, own)
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        raise DemoError(describe_error(exc, config.redis_url)) from exc


def _run(config: DemoConfig, observer: DemoObserver | None, slot: DemoSlot) -> DemoReport:
    session = DemoSession(config, observer or QuietObserver(), slot)
    try:
        session.reset()
        session.start_workers()
        session.publish()
        settled = session.wait_settled()
        if settled and config.replay:
            session.replay_outage()
            settled = session.wait_settled()
        exit_codes = session.stop_workers()
        return session.report(settled=settled, exit_codes=exit_codes)
    finally:
        session.close()


def dashboard_hint(report: DemoReport, redis_url: str | None) -> str:
    """The command that opens the web dashboard on the demo's streams (the demo's last
    line). ``redis_url`` is the URL the demo was given (``None``: the embedded Redis,
    which ``redrive dashboard`` finds by itself); its password is masked."""
    where = f"--redis-url '{redact_url(redis_url)}' " if redis_url else ""
    streams = " ".join(f"--stream {s.stream}" for s in report.streams)
    return f"redrive {where}dashboard {streams}"
