"""``redrive simulate``: load, faults and chaos against real workers, then a reconciliation.

1. start a private ``redis-server`` (AOF, ``appendfsync always``: the promise's premise)
   on a free loopback port, and one TCP proxy per worker in front of it;
2. start the workers (:mod:`redrive.simulate.worker_app`) through their proxies, with
   the scenario's fault plan in their environment;
3. publish the load at the scenario's rate while the chaos faults run on schedule;
4. once every fault has healed, drain (bounded): wait until nothing is unread, pending,
   scheduled or waiting in a retry stream;
5. stop the workers with SIGTERM, then account for every message
   (:mod:`redrive.simulate.accounting`).

The server and its files are private to the run and removed at its end; nothing else is
touched. Example::

    report = run_simulation(load_scenario("smoke").with_overrides(messages=500))
    assert report.ok, report.to_json()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis

from redrive.core.ids import is_after
from redrive.errors import RedriveError
from redrive.examples.ecommerce import STREAMS
from redrive.simulate.accounting import account
from redrive.simulate.chaos import Chaos
from redrive.simulate.faults import FaultPlan
from redrive.simulate.ledger import lateness_key
from redrive.simulate.producer import Producer
from redrive.simulate.proxy import Proxy
from redrive.simulate.report import SimulationReport
from redrive.simulate.scenario import Scenario
from redrive.simulate.traffic import TrafficGenerator
from redrive.simulate.worker_app import ENV_BROKEN
from redrive.simulate.workers import WorkerPool
from redrive.store.connection import async_client, sync_client
from redrive.store.keys import StreamKeys
from redrive.store.local import RedisProcess

PREFIX = "sim:"
STARTUP = 1.5  # seconds for the workers to import and connect before the load begins
TICK = 0.05
QUIET_POLLS = 3
Progress = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SimOptions:
    """How the run is hosted: where logs go, the duplicate slack, progress lines."""

    slack: float = 2.0
    keep_logs: bool = False
    redis_binary: Path | None = None
    progress: Progress | None = None
    #: Extra environment of the workers (tests set ``REDRIVE_SIM_BROKEN`` this way).
    worker_env: Mapping[str, str] = field(default_factory=dict)
    #: SIGTERM cancels the run (its processes stopped) and raises SimulationInterrupted;
    #: the CLI sets it. Off for library callers, whose own SIGTERM handling stays theirs.
    stop_on_sigterm: bool = False


def run_simulation(scenario: Scenario, options: SimOptions | None = None) -> SimulationReport:
    """Run ``scenario`` to its end (blocking) and return the report."""
    return asyncio.run(simulate(scenario, options or SimOptions()))


def _faults_enabled(plan: FaultPlan) -> bool:
    return (
        plan.default.enabled or any(r.enabled for r in plan.streams.values()) or bool(plan.phases)
    )


class SimulationInterrupted(RedriveError):
    """SIGTERM stopped the run; its workers, proxies and redis-server were stopped first."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(f"{name}: stopped the workers and the private redis-server")


async def simulate(scenario: Scenario, options: SimOptions) -> SimulationReport:
    """The asynchronous body of :func:`run_simulation`.

    With ``options.stop_on_sigterm`` (the CLI), SIGTERM — like Ctrl-C, which
    :func:`asyncio.run` already turns into a cancellation — cancels the run, so the
    ``finally`` of :func:`_host` stops every process it started: nothing is orphaned,
    not even a worker a fault had stopped with SIGSTOP.
    """
    task = asyncio.current_task()
    received: list[int] = []

    def on_sigterm() -> None:
        received.append(signal.SIGTERM)
        if task is not None:
            task.cancel()

    loop = asyncio.get_running_loop()
    if options.stop_on_sigterm:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await _host(scenario, options)
    except asyncio.CancelledError:
        if received:
            raise SimulationInterrupted(received[0]) from None
        raise  # Ctrl-C: asyncio.run raises KeyboardInterrupt
    finally:
        if options.stop_on_sigterm:
            loop.remove_signal_handler(signal.SIGTERM)


async def _host(scenario: Scenario, options: SimOptions) -> SimulationReport:
    """Start the private server, proxies and workers; stop them all, whatever happens."""
    say = options.progress or (lambda _text: None)
    log_dir = Path(tempfile.mkdtemp(prefix="redrive-sim-"))
    server = RedisProcess(options.redis_binary, appendonly=True, appendfsync="always")
    # Blocking on purpose: a signal is handled only once it is started, so the finally
    # below always knows whether there is a server to stop.
    server.start()
    proxies = [Proxy("127.0.0.1", int(server.port or 0)) for _ in range(scenario.run.workers)]
    monitor = async_client(server.url, socket_timeout=5.0)
    pool: WorkerPool | None = None
    try:
        for proxy in proxies:
            await proxy.start()
        t0 = time.time() + STARTUP
        plan = replace(scenario.faults, t0=t0)
        pool = WorkerPool(
            [p.url for p in proxies],
            prefix=PREFIX,
            seed=scenario.run.seed,
            handler=scenario.handler,
            faults_json=plan.to_json() if _faults_enabled(plan) else None,
            log_dir=log_dir,
            extra_env=options.worker_env,
        )
        say(f"redis-server {server.url} (appendfsync always); {scenario.run.workers} workers")
        pool.start_all()
        report = await _run(scenario, options, server, proxies, monitor, pool, t0)
        if report.ok and not options.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            say(f"worker logs kept in {log_dir}")
        return report
    finally:
        if pool is not None:
            pool.kill_all()
        await monitor.aclose()
        for proxy in proxies:
            await proxy.close()
        server.close()


async def _run(
    scenario: Scenario,
    options: SimOptions,
    server: RedisProcess,
    proxies: list[Proxy],
    monitor: Redis,
    pool: WorkerPool,
    t0: float,
) -> SimulationReport:
    say = options.progress or (lambda _text: None)
    keys = [StreamKeys.of(PREFIX + stream, group) for stream, group in STREAMS]
    chaos = Chaos(pool, proxies, server, monitor, keys)
    stop = asyncio.Event()
    supervisor = asyncio.create_task(chaos.supervise(stop))
    producer = Producer("127.0.0.1", int(server.port or 0))
    try:
        await asyncio.sleep(max(0.0, t0 - time.time()))
        say(f"publishing {scenario.run.messages} messages; {len(scenario.chaos)} faults")
        load = asyncio.gather(_produce(producer, scenario, t0), chaos.run(scenario.chaos, t0))
        await _unless_supervisor_fails(load, supervisor)
        say("every fault healed; draining")
        drain = _drain(monitor, keys, scenario.run.drain_timeout)
        settled = await _unless_supervisor_fails(drain, supervisor)
    finally:
        stop.set()
        try:
            await supervisor  # raises WorkerStartError when a worker cannot start
        finally:
            await producer.close()  # its socket is never left to the garbage collector
    say("stopping workers")
    codes = await asyncio.to_thread(pool.stop_all)
    await chaos.settle_watchers(10.0)
    say("reconciling")
    client = sync_client(server.url)
    try:
        records = producer.log.records
        idempotent = scenario.handler.idempotent
        streams = [account(client, k, records, chaos.events, slack=options.slack,
                           idempotent=idempotent) for k in keys]  # fmt: skip
        lateness = [int(v) for k in keys for v in client.hvals(lateness_key(k.stream))]
    finally:
        client.close()
    return SimulationReport(
        scenario=scenario.name,
        seed=scenario.run.seed,
        seconds=time.time() - t0,
        t0=t0,
        streams=streams,
        producer=_producer_summary(producer),
        events=chaos.events,
        lateness_ms=lateness,
        settled=settled,
        worker_exit_codes=codes,
        broken_build=bool(options.worker_env.get(ENV_BROKEN) or os.environ.get(ENV_BROKEN)),
    )


async def _unless_supervisor_fails(work: Awaitable[T], supervisor: asyncio.Task[None]) -> T:
    """Await ``work``; if the supervisor fails first (a worker that cannot start), cancel
    ``work`` and raise the supervisor's error instead of waiting for a deadline."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task, supervisor}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this run is cancelled (Ctrl-C, SIGTERM): never leave it running
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task not in done:
        supervisor.result()  # raises WorkerStartError
    return task.result()


def _producer_summary(producer: Producer) -> dict[str, Any]:
    return {
        "messages": len(producer.log.records),
        "final": dict(producer.log.status_counts()),
        "sends": dict(producer.log.sends),
    }


async def _produce(producer: Producer, scenario: Scenario, t0: float) -> None:
    """Publish the scenario's messages at its rate (``0``: as fast as Redis takes them)."""
    run = scenario.run
    gen = TrafficGenerator(seed=run.seed, prefix=PREFIX, mix=scenario.mix)
    sent = 0
    per_tick = run.batch if run.rate <= 0 else max(1, min(run.batch, int(run.rate * TICK)))
    while sent < run.messages:
        if run.rate > 0:
            await asyncio.sleep(max(0.0, t0 + sent / run.rate - time.time()))
        count = min(per_tick, run.messages - sent)
        await producer.send(list(gen.take(count)))
        sent += count


async def _drain(monitor: Redis, keys: list[StreamKeys], timeout: float) -> bool:
    """Poll until nothing is left to do (several polls in a row) or the deadline passes."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if await _quiet(monitor, keys) else 0
        if quiet >= QUIET_POLLS:
            return True
        await asyncio.sleep(0.2)
    return False


async def _quiet(monitor: Redis, keys: list[StreamKeys]) -> bool:
    try:
        for k in keys:
            pipe = monitor.pipeline(transaction=False)
            pipe.xpending(k.stream, k.group)
            pipe.xpending(k.retry, k.group)
            pipe.xlen(k.retry)
            pipe.zcard(k.due)
            pipe.xinfo_groups(k.stream)
            pipe.xrevrange(k.stream, count=1)
            pel, retry_pel, retry_len, due, groups, last = await pipe.execute()
            if pel["pending"] or retry_pel["pending"] or retry_len or due:
                return False
            delivered = next(
                g["last-delivered-id"] for g in groups if g["name"] == k.group.encode()
            )
            if last and is_after(last[0][0], delivered):
                return False  # entries nobody has read yet
    except Exception:  # NOGROUP, a restarting server, a lost reply: not quiet yet
        return False
    return True
