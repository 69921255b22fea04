"""Degrade, never stall: a failing subset, an outage, a bad deploy, control flow (issue 9).

Scaled down from the issue's runs (a 5 s stall becomes 1 s, 100,000 messages 3,000); the
handler awaits a 1 ms "gateway call", so throughput ratios measure redrive's behaviour
against the cost of the failing attempts rather than the machine's noise.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field

import pytest
import redis.asyncio

from redrive import App, BreakerPolicy, Retry, RetryPolicy
from redrive.store.keys import dlq, stats
from tests.integration.helpers import dead_letters, running, until

GATEWAY_S = 0.001
RETRY = RetryPolicy(max_retries=3, base_delay=0.05)


def failing(key: int, share: float) -> bool:
    """The keys of the merchants whose gateway is down, chosen by a hash of the key."""
    return zlib.crc32(str(key).encode()) % 10_000 < share * 10_000


@dataclass
class Outcome:
    """What a run saw: successes over time and the breaker's counters."""

    successes: list[float] = field(default_factory=list)
    started: float = 0.0

    def longest_gap(self) -> float:
        times = [self.started, *self.successes]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def rate(self) -> float:
        """Successes per second from the first to the last (the worker's start-up, noisy
        on a loaded machine, is not what the ratios compare)."""
        return (len(self.successes) - 1) / (self.successes[-1] - self.successes[0])


async def publish(r: redis.asyncio.Redis, stream: str, bodies: list[str]) -> None:
    pipe = r.pipeline(transaction=False)
    for body in bodies:
        pipe.xadd(stream, {"data": body})
    await pipe.execute()


async def counter(r: redis.asyncio.Redis, stream: str, name: str) -> int:
    return int(await r.hget(stats(stream, "g"), name) or 0)


async def backlog_run(
    url: str, r: redis.asyncio.Redis, stream: str, share: float, n: int
) -> Outcome:
    """Consume a backlog of ``n`` with ``share`` of keys always timing out."""
    await publish(r, stream, [json.dumps({"merchant": i}) for i in range(n)])
    healthy = sum(not failing(i, share) for i in range(n))
    seen = Outcome()
    app = App()

    @app.handler(stream, group="g", retry=RETRY)
    async def charge(msg):  # type: ignore[no-untyped-def]
        await asyncio.sleep(GATEWAY_S)
        if failing(msg.data["merchant"], share):
            raise TimeoutError("gateway of this merchant is down")
        seen.successes.append(time.perf_counter())

    seen.started = time.perf_counter()
    async with running(app, url, block_ms=100):
        await until(lambda: len(seen.successes) >= healthy, 60, "every healthy message")
        await until(lambda: _len(r, dlq(stream), n - healthy), 20, "failing ones in the DLQ")
    return seen


async def _len(r: redis.asyncio.Redis, key: str, want: int) -> bool:
    return int(await r.xlen(key)) >= want


@pytest.mark.parametrize("share", [0.01, 0.03, 0.05, 0.10, 0.20, 0.40])
async def test_a_failing_subset_never_stalls_the_healthy_messages(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, share: float
) -> None:
    n = 3_000
    baseline = await backlog_run(redis_url, aredis, f"{prefix}base", 0.0, n)
    stream = f"{prefix}orders"

    seen = await backlog_run(redis_url, aredis, stream, share, n)

    # No pause: the issue saw 54 s without a success at 3%; scaled, 1 s is a stall.
    assert seen.longest_gap() < 1.0, seen.longest_gap()
    ratio = seen.rate() / baseline.rate()
    # Up to 10%: at least half the all-healthy rate. Above: it falls only by the cost
    # of the failing attempts (4 runs per failing key), with the same margin.
    cost_model = (1 - share) / ((1 - share) + 4 * share)
    bar = 0.5 if share <= 0.10 else 0.5 * cost_model
    if ratio < bar:  # a noisy machine (a loaded suite): measure the pair once more
        again_base = await backlog_run(redis_url, aredis, f"{prefix}base2", 0.0, n)
        again = await backlog_run(redis_url, aredis, f"{prefix}orders2", share, n)
        assert again.longest_gap() < 1.0, again.longest_gap()
        ratio = max(ratio, again.rate() / again_base.rate())
    assert ratio >= bar, (ratio, cost_model)
    assert await counter(aredis, stream, "breaker_opened") == 0
    dead = await dead_letters(aredis, stream)
    assert len(dead) == sum(failing(i, share) for i in range(n))
    assert {(d["redrive-reason"], d["redrive-attempt"]) for d in dead} == {
        (b"max_retries_exceeded", b"4")
    }


async def test_a_real_outage_opens_the_breaker_burns_no_retries_and_recovers_fast(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    stream = f"{prefix}payments"
    open_seconds = 1.0
    down_until = 0.0
    done: dict[int, float] = {}
    app = App()

    @app.handler(stream, group="g", retry=RETRY, breaker=BreakerPolicy(open_seconds=open_seconds))
    async def charge(msg):  # type: ignore[no-untyped-def]
        await asyncio.sleep(GATEWAY_S)
        if time.monotonic() < down_until:
            raise TimeoutError("payment gateway down")
        done.setdefault(msg.data["n"], time.monotonic())

    total = 1_500
    caplog.set_level(logging.WARNING, "redrive")
    async with running(app, redis_url, block_ms=100):
        down_until = time.monotonic() + 2.0  # every call fails for 2 s, then healthy
        for n in range(total):  # 500 msg/s for 3 s: through the outage and after it
            await aredis.xadd(stream, {"data": json.dumps({"n": n})})
            if n % 50 == 49:
                await asyncio.sleep(0.1)
        await until(lambda: len(done) == total, 20, "every payment")

    assert await counter(aredis, stream, "breaker_opened") >= 1
    assert await aredis.xlen(dlq(stream)) == 0  # the outage's victims were parked, not burned
    first_after = min(t for t in done.values() if t >= down_until)
    assert first_after - down_until <= open_seconds + 1.0
    opened = [r.getMessage() for r in caplog.records if "breaker" in r.getMessage()]
    assert any("opened: transient failures" in m for m in opened), opened
    assert any("closed" in m for m in opened), opened


async def test_a_bad_deploy_pauses_the_handler_instead_of_emptying_the_stream(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    stream = f"{prefix}orders"
    await publish(aredis, stream, [json.dumps({"n": n}) for n in range(1_000)])
    app = App()

    def total(order):  # type: ignore[no-untyped-def]
        return order["amount"] * order["qty"]

    @app.handler(stream, group="g", retry=RETRY, breaker=BreakerPolicy(open_seconds=0.5))
    async def handle(msg):  # type: ignore[no-untyped-def]
        total(msg.data, 2)  # the bug: a TypeError on every message

    caplog.set_level(logging.WARNING, "redrive")
    async with running(app, redis_url, block_ms=100):
        await until(lambda: _counter_at_least(aredis, stream, "breaker_opened", 2), 10, "pause")
        await asyncio.sleep(1.0)  # paused: probes fail and are parked, nothing drains
        dead = await aredis.xlen(dlq(stream))
        health = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "redrive.cli", "--redis-url", redis_url, "health",
             "--stream", stream, "--no-alerts"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert dead <= 40, dead  # the streak that opened it (20) and what was in flight
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("handler failures" in m and "bad deploy" in m for m in warnings), warnings
    # The alerts: the consumer's breaker is open (WARN) and every run fails (CRIT, exit 2).
    assert health.returncode == 2, health.stdout + health.stderr
    assert "open: c1" in health.stdout, health.stdout


async def _counter_at_least(r: redis.asyncio.Redis, stream: str, name: str, want: int) -> bool:
    return await counter(r, stream, name) >= want


async def test_a_poison_storm_still_dead_letters_its_bad_input_at_once(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    # 35% bad input, all of it first: 350 failures in a row, so were bad input ever
    # counted as a handler failure the streak rule would pause the handler at once.
    bodies = ["{not json" if n < 350 else json.dumps({"n": n}) for n in range(1_000)]
    await publish(aredis, stream, bodies)
    done: set[int] = set()
    app = App()

    @app.handler(stream, group="g", retry=RETRY)
    async def handle(msg):  # type: ignore[no-untyped-def]
        done.add(msg.data["n"])

    async with running(app, redis_url, block_ms=100):
        await until(lambda: len(done) == 650, 10, "the good ones")
        await until(lambda: _len(aredis, dlq(stream), 350), 10, "the bad ones")

    dead = await dead_letters(aredis, stream)
    assert {(d["redrive-reason"], d["redrive-attempt"]) for d in dead} == {(b"poison", b"1")}
    assert await counter(aredis, stream, "breaker_opened") == 0


async def test_explicit_retry_is_control_flow_not_a_dependency_failure(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    await publish(aredis, stream, [json.dumps({"n": n}) for n in range(200)])
    done: set[int] = set()
    app = App()

    @app.handler(stream, group="g", retry=RETRY)
    async def handle(msg):  # type: ignore[no-untyped-def]
        if msg.data["n"] % 5 < 3 and msg.attempt == 1:
            raise Retry(delay=0.2)
        done.add(msg.data["n"])

    started = time.monotonic()
    async with running(app, redis_url, block_ms=100):
        await until(lambda: len(done) == 200, 10, "every message")
        elapsed = time.monotonic() - started

    assert elapsed < 0.2 + 1.0, elapsed
    assert await counter(aredis, stream, "breaker_opened") == 0
