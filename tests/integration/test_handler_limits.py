"""Handlers that hang, handlers that are async in disguise, handlers that cannot run (issue 9)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio

from redrive import App, ConfigError, RetryPolicy
from redrive.store.keys import dlq, stats
from tests.integration.helpers import dead_letters, running, until

RETRY = RetryPolicy(max_retries=1, base_delay=0.05)


def hangs(n: int) -> bool:
    """2% of keys: their gateway call never returns."""
    return zlib.crc32(str(n).encode()) % 100 < 2


async def publish(r: redis.asyncio.Redis, stream: str, total: int) -> None:
    pipe = r.pipeline(transaction=False)
    for n in range(total):
        pipe.xadd(stream, {"data": json.dumps({"n": n})})
    await pipe.execute()


@pytest.mark.parametrize("kind", ["async", "def"])
async def test_handlers_that_never_return_do_not_stall_the_stream(
    redis_url: str,
    prefix: str,
    aredis: redis.asyncio.Redis,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = f"{prefix}orders"
    total = 600
    stuck = [n for n in range(total) if hangs(n)]
    assert stuck  # the hash picks some keys
    done: set[int] = set()
    release = threading.Event()  # lets the abandoned def threads end after the test
    app = App()

    if kind == "async":

        @app.handler(stream, group="g", retry=RETRY, timeout=0.3)
        async def handle(msg):  # type: ignore[no-untyped-def]
            if hangs(msg.data["n"]):
                await asyncio.Event().wait()  # a network call without a timeout
            done.add(msg.data["n"])

    else:

        @app.handler(stream, group="g", retry=RETRY, timeout=0.3)
        def handle(msg):  # type: ignore[no-untyped-def]
            if hangs(msg.data["n"]):
                release.wait()  # blocks its thread: it cannot be cancelled
            done.add(msg.data["n"])

    await publish(aredis, stream, total)
    caplog.set_level(logging.WARNING, "redrive")
    try:
        async with running(app, redis_url, block_ms=100, shutdown_timeout=1.0):
            await until(lambda: len(done) == total - len(stuck), 20, "every healthy message")
            await until(lambda: _dlq_len(aredis, stream, len(stuck)), 20, "the hung ones")
            await until(lambda: _published(aredis, stream, "timed_out", 2 * len(stuck)), 5)
    finally:
        release.set()

    dead = await dead_letters(aredis, stream)
    assert sorted(json.loads(d["data"])["n"] for d in dead) == stuck
    assert {(d["redrive-reason"], d["redrive-attempt"]) for d in dead} == {
        (b"handler_timeout", b"2")
    }
    messages = [r.getMessage() for r in caplog.records]
    assert any("passed the 0.3s time limit" in m for m in messages)
    if kind == "def":
        assert any("its thread cannot be stopped and is abandoned" in m for m in messages)


async def _dlq_len(r: redis.asyncio.Redis, stream: str, want: int) -> bool:
    return int(await r.xlen(dlq(stream))) >= want


async def _published(r: redis.asyncio.Redis, stream: str, name: str, want: int) -> bool:
    return int(await r.hget(stats(stream, "g"), name) or 0) >= want


class Charger:
    """A handler object with ``async def __call__`` (once sent to the thread pool)."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, int]] = []

    async def __call__(self, msg: Any) -> None:
        await asyncio.sleep(0)
        self.runs.append((msg.data["n"], msg.attempt))
        if msg.attempt == 1 and msg.data["n"] % 2:
            raise TimeoutError("gateway")


def logged(fn: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """A plain ``def`` decorator around an async handler, without functools.wraps."""

    def call(msg: Any) -> Awaitable[None]:
        return fn(msg)

    return call


def wrapped(fn: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """The same with functools.wraps."""

    @functools.wraps(fn)
    def call(msg: Any) -> Awaitable[None]:
        return fn(msg)

    return call


@pytest.mark.parametrize("shape", ["object", "plain-decorator", "wraps-decorator"])
async def test_async_handlers_in_disguise_run_fail_and_retry_like_async_def(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, shape: str
) -> None:
    stream = f"{prefix}orders"
    charger = Charger()
    handler: Any = charger
    if shape != "object":

        async def inner(msg: Any) -> None:
            await charger(msg)

        handler = (logged if shape == "plain-decorator" else wrapped)(inner)
    app = App()
    app.handler(stream, group="g", retry=RETRY)(handler)
    await publish(aredis, stream, 20)

    async with running(app, redis_url, block_ms=100):
        await until(lambda: len(charger.runs) == 30, 10, "20 first runs and 10 retries")
        await until(lambda: _published(aredis, stream, "succeeded", 20), 5, "20 successes")

    assert sorted(charger.runs) == sorted(
        [(n, 1) for n in range(20)] + [(n, 2) for n in range(1, 20, 2)]
    )
    assert await aredis.xlen(dlq(stream)) == 0
    assert int(await aredis.hget(stats(stream, "g"), "retried") or 0) == 10


def test_a_handler_that_cannot_take_a_message_is_refused_at_registration() -> None:
    app = App()

    async def no_args() -> None: ...

    async def two_args(msg: Any, extra: Any) -> None: ...

    for fn in (no_args, two_args):
        with pytest.raises(ConfigError, match="must take one argument, the message"):
            app.handler("s", group="g")(fn)
    with pytest.raises(ConfigError, match="is not callable"):
        app.handler("s", group="g")(42)  # type: ignore[type-var]
    assert app.specs == []


def test_a_middleware_of_the_wrong_shape_is_refused_when_added() -> None:
    app = App()

    def one_arg(call_next: Any) -> Any:
        return call_next

    with pytest.raises(ConfigError, match="must take \\(spec, call_next\\)"):
        app.use(one_arg)


async def test_a_middleware_that_forgot_to_return_stops_the_start_not_every_message(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()

    def forgetful(spec: Any, call_next: Any) -> Any:
        async def call(msg: Any) -> Any:
            return await call_next(msg)

        # forgot: return call

    app.use(forgetful)

    @app.handler(stream, group="g")
    async def handle(msg):  # type: ignore[no-untyped-def]
        pass

    await publish(aredis, stream, 5)
    with pytest.raises(ConfigError, match=r"middleware .*forgetful returned None"):
        async with running(app, redis_url, block_ms=100):
            await asyncio.sleep(0.5)
    assert await aredis.xlen(dlq(stream)) == 0  # nothing was dead-lettered by the bug


async def test_a_handler_that_swallows_the_cancellation_does_not_blind_the_watchdog(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()

    @app.handler(stream, group="g", retry=RetryPolicy(max_retries=0), timeout=0.2, concurrency=1)
    async def handle(msg):  # type: ignore[no-untyped-def]
        if msg.data["n"] == 0:
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:  # a handler that must not do this, but does
                raise RuntimeError("cleanup failed") from None
        await asyncio.Event().wait()  # the next one, on the same lane, simply hangs

    await publish(aredis, stream, 2)
    async with running(app, redis_url, block_ms=100, shutdown_timeout=1.0):
        await until(lambda: _dlq_len(aredis, stream, 2), 10, "both dead letters")

    reasons = {
        json.loads(d["data"])["n"]: d["redrive-reason"] for d in await dead_letters(aredis, stream)
    }
    assert reasons == {0: b"max_retries_exceeded", 1: b"handler_timeout"}


async def test_a_handler_without_a_time_limit_keeps_consuming(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    # No time limit and no DLQ retention: those loops have nothing to do and end at once;
    # the consumer must go on (it once took the first finished loop as a reason to stop).
    stream = f"{prefix}orders"
    app = App()
    seen: list[str] = []

    @app.handler(stream, group="g", timeout=None)
    async def handle(msg):  # type: ignore[no-untyped-def]
        seen.append(msg.id)

    async with running(app, redis_url, block_ms=100) as task:
        await aredis.xadd(stream, {"data": "{}"})
        await until(lambda: len(seen) == 1, what="the first message")
        await asyncio.sleep(0.3)  # past every loop's first tick
        await aredis.xadd(stream, {"data": "{}"})
        await until(lambda: len(seen) == 2, what="a message sent later")
        assert not task.done()
