"""Retries follow base * 2**n and the last failure lands in the DLQ with full metadata."""

from __future__ import annotations

import json
import time

import redis.asyncio

from redrive import App, RetryPolicy
from redrive.store.keys import retry_due, retry_stream
from tests.integration.helpers import dead_letters, pending, running, until

BASE = 0.2
TOLERANCE = 0.08  # seconds either side: scheduler wake-ups and a shared 2-core machine


async def test_gaps_double_and_fourth_failure_is_dead_lettered(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()
    attempts: list[tuple[int, float]] = []

    @app.handler(stream, group="orders", retry=RetryPolicy(max_retries=3, base_delay=BASE))
    async def always_fails(msg):  # type: ignore[no-untyped-def]
        attempts.append((msg.attempt, time.monotonic()))
        raise RuntimeError(f"gateway said no to order {msg.data['order_id']}")

    source_id = (await aredis.xadd(stream, {"data": json.dumps({"order_id": 7})})).decode()
    async with running(app, redis_url):
        await until(lambda: len(attempts) == 4, timeout=10, what="four attempts")
        await until(_dlq_size(aredis, stream, 1), what="the dead letter")

    assert [a for a, _ in attempts] == [1, 2, 3, 4]
    gaps = [attempts[i + 1][1] - attempts[i][1] for i in range(3)]
    for n, gap in enumerate(gaps):
        expected = BASE * 2**n
        assert abs(gap - expected) <= TOLERANCE, f"gap {n}: {gap:.3f}s, expected {expected}s"

    [dead] = await dead_letters(aredis, stream)
    assert dead["data"] == b'{"order_id": 7}'
    assert dead["redrive-reason"] == b"max_retries_exceeded"
    assert dead["redrive-attempt"] == b"4"
    assert dead["redrive-origin-stream"] == stream.encode()
    assert dead["redrive-origin-id"] == source_id.encode()
    assert dead["redrive-group"] == b"orders"
    assert dead["redrive-consumer"] == b"c1"
    assert dead["redrive-error-type"] == b"RuntimeError"
    assert dead["redrive-error-class"] == b"processing"
    assert dead["redrive-error-message"] == b"gateway said no to order 7"
    assert b"RuntimeError" in dead["redrive-traceback"]
    assert int(dead["redrive-dead-ms"]) >= int(dead["redrive-first-failed-ms"])
    history = json.loads(dead["redrive-history"])
    assert [h["a"] for h in history] == [1, 2, 3, 4]
    # Nothing is left behind: no pending entry, no scheduled retry, retry stream empty.
    assert await pending(aredis, stream, "orders") == 0
    assert await aredis.zcard(retry_due(stream, "orders")) == 0
    assert await aredis.xlen(retry_stream(stream, "orders")) == 0


async def test_a_retry_that_succeeds_is_acked_once(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}payments"
    app = App()
    calls: dict[str, int] = {}
    done: list[str] = []

    # Every first delivery times out: with the default breaker that would (rightly) pause
    # reading; this test is about retries alone.
    @app.handler(stream, group="pay", retry=RetryPolicy(base_delay=0.05), breaker=None)
    async def flaky(msg):  # type: ignore[no-untyped-def]
        calls[msg.id] = calls.get(msg.id, 0) + 1
        if msg.attempt < 3:
            raise TimeoutError("gateway timed out")
        done.append(msg.id)

    ids = [(await aredis.xadd(stream, {"data": "{}"})).decode() for _ in range(20)]
    async with running(app, redis_url):
        await until(lambda: len(done) == 20, what="all twenty to succeed")
        await until(_no_pending(aredis, stream, "pay"), what="acks")

    assert sorted(done) == sorted(ids), "every message succeeds exactly once"
    assert set(calls.values()) == {3}
    assert await dead_letters(aredis, stream) == []


def _dlq_size(r: redis.asyncio.Redis, stream: str, n: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return len(await dead_letters(r, stream)) == n

    return check


def _no_pending(r: redis.asyncio.Redis, stream: str, group: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await pending(r, stream, group) == 0

    return check
