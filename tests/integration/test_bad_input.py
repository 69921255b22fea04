"""Bad input is dead-lettered with its reason on the first attempt; the worker keeps going."""

from __future__ import annotations

import json

import redis.asyncio

from redrive import App, Reject, RetryPolicy, ValidationError
from tests.integration.helpers import dead_letters, pending, running, until


def _reasons(dead: list[dict[str, bytes]]) -> dict[bytes, bytes]:
    return {d["redrive-origin-id"]: d["redrive-reason"] for d in dead}


async def test_poison_and_permanent_errors_skip_retries(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()
    seen: list[tuple[str, int]] = []
    ok: list[str] = []

    @app.handler(stream, group="g", retry=RetryPolicy(base_delay=0.05), max_payload_bytes=1024)
    async def handle(msg):  # type: ignore[no-untyped-def]
        seen.append((msg.id, msg.attempt))
        order = msg.data
        if "order_id" not in order:
            raise ValidationError("order_id is missing")
        if order.get("reject"):
            raise Reject("order is for a closed shop")
        if not isinstance(order["order_id"], int):
            raise TypeError("order_id must be an integer")
        ok.append(msg.id)

    bad = {
        "not json": b"{order_id: 1",
        "not utf-8": b'{"order_id": "\xff\xfe"}',
        "too large": json.dumps({"order_id": 1, "pad": "x" * 5000}).encode(),
        "missing field": b'{"amount": 3}',
        "wrong type": b'{"order_id": "one"}',
        "rejected": b'{"order_id": 2, "reject": true}',
    }
    ids = {}
    for name, body in bad.items():
        ids[name] = await aredis.xadd(stream, {"data": body})
    good = await aredis.xadd(stream, {"data": b'{"order_id": 3}'})

    async with running(app, redis_url):
        await until(lambda: good.decode() in ok, what="the good message after the bad ones")
        await until(_dlq_count(aredis, stream, len(bad)), what="six dead letters")

    reasons = _reasons(await dead_letters(aredis, stream))
    assert reasons == {
        ids["not json"]: b"poison",
        ids["not utf-8"]: b"poison",
        ids["too large"]: b"payload_too_large",
        ids["missing field"]: b"permanent_error",
        ids["wrong type"]: b"permanent_error",
        ids["rejected"]: b"permanent_error",
    }
    # First attempt only: nothing was retried. The oversized body never reached the handler.
    assert all(attempt == 1 for _, attempt in seen)
    assert ids["too large"].decode() not in {i for i, _ in seen}
    assert await pending(aredis, stream, "g") == 0


async def test_dead_letter_keeps_non_utf8_bytes(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}raw"
    app = App()

    @app.handler(stream, group="g")
    async def handle(msg):  # type: ignore[no-untyped-def]
        msg.data  # noqa: B018 - decoding is what fails

    body = b"\x80\x81 binary \xff"
    await aredis.xadd(stream, {"data": body, "blob": b"\x00\xff"})
    async with running(app, redis_url):
        await until(_dlq_count(aredis, stream, 1), what="the dead letter")
    [dead] = await dead_letters(aredis, stream)
    assert dead["data"] == body
    assert dead["blob"] == b"\x00\xff"
    assert dead["redrive-reason"] == b"poison"
    assert b"not UTF-8" in dead["redrive-error-message"]


async def test_forged_metadata_on_the_source_stream_changes_nothing(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()
    attempts: list[int] = []

    @app.handler(stream, group="g", retry=RetryPolicy(max_retries=2, base_delay=0.02))
    async def handle(msg):  # type: ignore[no-untyped-def]
        attempts.append(msg.attempt)
        assert not any(k.startswith(b"redrive-") for k in msg.fields)
        raise RuntimeError("fails every time")

    forged = {
        "data": b"{}",
        "redrive-attempt": b"99",  # would skip every retry if trusted
        "redrive-reason": b"permanent_error",
        "redrive-origin-id": b"1-1",
        "redrive-replays": b"7",
    }
    real_id = await aredis.xadd(stream, forged)
    async with running(app, redis_url):
        await until(_dlq_count(aredis, stream, 1), what="the dead letter")

    assert attempts == [1, 2, 3], "all retries happen despite redrive-attempt=99"
    [dead] = await dead_letters(aredis, stream)
    assert dead["redrive-origin-id"] == real_id
    assert dead["redrive-reason"] == b"max_retries_exceeded"
    assert dead["redrive-attempt"] == b"3"
    assert dead["redrive-replays"] == b"0"


async def test_a_failing_message_does_not_delay_the_others(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()
    latency: dict[str, float] = {}
    bad_attempts: list[int] = []

    @app.handler(stream, group="g", retry=RetryPolicy(max_retries=3, base_delay=0.3),
                 concurrency=4, breaker=None)  # fmt: skip
    async def handle(msg):  # type: ignore[no-untyped-def]
        if msg.data.get("bad"):
            bad_attempts.append(msg.attempt)
            raise RuntimeError("this one always fails")
        now_ms = await aredis.time()
        latency[msg.id] = now_ms[0] + now_ms[1] / 1e6 - int(msg.id.split("-")[0]) / 1000

    async with running(app, redis_url):
        await aredis.xadd(stream, {"data": b'{"bad": true}'})
        for i in range(200):
            await aredis.xadd(stream, {"data": json.dumps({"n": i})})
        await until(lambda: len(latency) == 200, what="the good messages")
        good_done = bad_attempts[:]
        await until(_dlq_count(aredis, stream, 1), what="the bad message's dead letter")

    ordered = sorted(latency.values())
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    # The bad message needs 0.3 + 0.6 + 0.9 s of retries; the others must not wait for it.
    assert len(good_done) < 4, "the good messages finished before the bad one died"
    assert p99 < 0.25, f"p99 latency of good messages {p99:.3f}s"


async def test_sync_handlers_run_in_threads(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}sync"
    app = App()
    done: list[int] = []

    @app.handler(stream, group="g", retry=RetryPolicy(base_delay=0.02), concurrency=4)
    def handle(msg):  # type: ignore[no-untyped-def]
        if msg.attempt == 1 and msg.data["n"] % 2:
            raise TimeoutError("odd ones time out once")
        done.append(msg.data["n"])

    for n in range(10):
        await aredis.xadd(stream, {"data": json.dumps({"n": n})})
    async with running(app, redis_url):
        await until(lambda: len(done) == 10, what="ten successes")
        await until(_no_pending(aredis, stream), what="acks")
    assert sorted(done) == list(range(10))


def _dlq_count(r: redis.asyncio.Redis, stream: str, n: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return len(await dead_letters(r, stream)) >= n

    return check


def _no_pending(r: redis.asyncio.Redis, stream: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await pending(r, stream, "g") == 0

    return check
