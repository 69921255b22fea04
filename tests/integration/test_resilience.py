"""The loop survives lost groups, dropped connections and dependency outages."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import redis.asyncio

from redrive import App, BreakerPolicy, RetryPolicy
from redrive.store.keys import dlq
from redrive.store.scripts import scripts
from tests.integration.helpers import pending, running, until


async def test_lost_group_is_recreated_at_the_backlog_with_a_warning(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    stream = f"{prefix}orders"
    app = App()
    done: set[int] = set()

    @app.handler(stream, group="g")
    async def handle(msg):  # type: ignore[no-untyped-def]
        done.add(msg.data["n"])

    async with running(app, redis_url, block_ms=100):
        await aredis.xadd(stream, {"data": json.dumps({"n": 0})})
        await until(lambda: done == {0}, what="the first message")
        # As after a restart without persistence: the group is gone. Messages written
        # meanwhile must not be skipped (no silent '$').
        await aredis.xgroup_destroy(stream, "g")
        await aredis.xadd(stream, {"data": json.dumps({"n": 1})})
        await until(lambda: 1 in done, what="the message written while the group was gone")
    assert any(
        "recreated" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
    )


async def test_killed_connections_lose_nothing(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()
    done: dict[int, int] = {}

    @app.handler(stream, group="g", concurrency=8)
    async def handle(msg):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.001)
        n = msg.data["n"]
        done[n] = done.get(n, 0) + 1

    total = 2000
    async with running(app, redis_url, block_ms=100):
        for n in range(total):
            await aredis.xadd(stream, {"data": json.dumps({"n": n})})
            if n % 400 == 399:
                # Drop every client connection except ours, mid-flight.
                await aredis.client_kill_filter(_type="normal", skipme=True)
        await until(lambda: len(done) == total, timeout=30, what="every message")
        await until(_settled(aredis, stream), what="no pending entries")
    assert set(done) == set(range(total))
    assert await aredis.xlen(dlq(stream)) == 0


async def test_open_breaker_pauses_reading_instead_of_burning_retries(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}payments"
    app = App()
    gateway_up = False
    done: set[int] = set()
    calls = 0

    @app.handler(
        stream,
        group="g",
        retry=RetryPolicy(max_retries=2, base_delay=0.05),
        breaker=BreakerPolicy(threshold=0.5, window=10, min_calls=5, open_seconds=0.3),
        concurrency=1,
    )
    async def handle(msg):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if not gateway_up:
            raise TimeoutError("payment gateway down")
        done.add(msg.data["n"])

    for n in range(100):
        await aredis.xadd(stream, {"data": json.dumps({"n": n})})
    async with running(app, redis_url, block_ms=100):
        await asyncio.sleep(1.5)  # the outage: five breaker periods
        calls_during_outage = calls
        gateway_up = True
        await until(lambda: len(done) == 100, timeout=20, what="recovery")
        await until(_settled(aredis, stream), what="no pending entries")

    # Without the breaker 100 messages x 3 attempts would have run and all died.
    assert calls_during_outage < 40, f"{calls_during_outage} calls while the gateway was down"
    assert await aredis.xlen(dlq(stream)) == 0, "nothing was burned into the DLQ"


async def test_long_handler_keeps_its_lease(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}slow"
    runs: list[str] = []

    def make_app() -> App:
        app = App()

        @app.handler(stream, group="g", visibility_timeout=0.6)
        async def slow(msg):  # type: ignore[no-untyped-def]
            runs.append(msg.id)
            await asyncio.sleep(2.0)  # more than three visibility timeouts

        return app

    await aredis.xadd(stream, {"data": b"{}"})
    async with running(make_app(), redis_url, consumer="a", reclaim_interval=0.1):
        await until(lambda: len(runs) == 1, what="the first run")
        async with running(make_app(), redis_url, consumer="b", reclaim_interval=0.1):
            await asyncio.sleep(2.2)
    assert len(runs) == 1, "the entry was reclaimed while its handler was still running"


async def test_fence_rejects_moves_by_a_consumer_that_no_longer_owns_the_entry(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    s = scripts()
    await s.load_all(aredis)
    await aredis.xgroup_create(stream, "g", id="0", mkstream=True)
    entry = await aredis.xadd(stream, {"data": b"{}"})
    await aredis.xreadgroup("g", "paused", {stream: ">"})
    await aredis.xclaim(stream, "g", "rescuer", 0, [entry])  # reclaimed while "paused" slept

    acked, fenced, gone = await s.ack(aredis, [stream], ["g", "paused", "0", entry])
    assert (acked, fenced, gone) == (0, [entry], [])
    dead = await s.dead_letter(aredis, [stream, dlq(stream)], ["g", "paused", entry, "0",
                                                              "data", "{}"])  # fmt: skip
    assert dead == [-1, None]
    assert await aredis.xlen(dlq(stream)) == 0
    assert await s.schedule_retry(aredis, [stream, f"{stream}:due"],
                                  ["g", "paused", entry, 1, "0", "data", "{}"]) == -1  # fmt: skip
    # The owner can.
    assert (await s.ack(aredis, [stream], ["g", "rescuer", "0", entry]))[0] == 1


def _settled(r: redis.asyncio.Redis, stream: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await pending(r, stream, "g") == 0

    return check
