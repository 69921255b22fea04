"""``redrive.testing.running`` and ``until_idle`` against the session's private redis-server."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio

from redrive import App, RetryPolicy
from redrive.errors import ConfigError
from redrive.store.connection import async_client
from redrive.store.keys import retry_due, retry_stream
from redrive.testing import NotIdle, outstanding, running, until_idle

FAST = RetryPolicy(max_retries=3, base_delay=0.2)


async def test_until_idle_waits_for_the_retry_of_a_handler_that_fails_once(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()
    attempts: list[tuple[int, int]] = []

    @app.handler(stream, group="orders", retry=FAST)
    async def flaky(msg):  # type: ignore[no-untyped-def]
        attempts.append((msg.data["n"], msg.attempt))
        if msg.attempt == 1:
            raise TimeoutError("the gateway blinked")

    async with running(app, redis_url) as run:
        for n in range(3):
            await aredis.xadd(stream, {"data": json.dumps({"n": n})})
        await run.until_idle(timeout=10.0)
        # Returned only after the retries ran: each message twice, the second time ok.
        assert sorted(attempts) == [(n, a) for n in range(3) for a in (1, 2)]
        left = await outstanding(aredis, stream, "orders")
        assert not left.busy(wait_scheduled=True), left.describe()
    assert await aredis.zcard(retry_due(stream, "orders")) == 0
    assert await aredis.xlen(f"dlq:{{{stream}}}") == 0


async def test_without_wait_scheduled_it_returns_while_a_retry_waits_for_later(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()
    runs: list[int] = []

    @app.handler(stream, group="orders", retry=RetryPolicy(base_delay=60.0))
    async def fails(msg):  # type: ignore[no-untyped-def]
        runs.append(msg.attempt)
        raise RuntimeError("not yet")

    async with running(app, redis_url) as run:
        await aredis.xadd(stream, {"data": "{}"})
        await run.until_idle(timeout=10.0, wait_scheduled=False)
        assert runs == [1]
        assert await aredis.zcard(retry_due(stream, "orders")) == 1  # waiting 60 s
        resp3 = async_client(redis_url, protocol=3)  # as a reader's own client may speak
        try:
            seen = [await outstanding(c, stream, "orders") for c in (aredis, resp3)]
        finally:
            await resp3.aclose()
        assert seen[0] == seen[1] and (seen[0].scheduled, seen[0].pending) == (1, 0)
        with pytest.raises(NotIdle, match="1 retries scheduled for later") as caught:
            await run.until_idle(timeout=0.3)
    [left] = caught.value.outstanding
    assert (left.stream, left.group, left.scheduled, left.pending) == (stream, "orders", 1, 0)


async def test_the_timeout_names_a_message_still_in_the_handler(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()
    release = asyncio.Event()

    @app.handler(stream, group="orders")
    async def slow(msg):  # type: ignore[no-untyped-def]
        await release.wait()

    async with running(app, redis_url) as run:
        await aredis.xadd(stream, {"data": "{}"})
        with pytest.raises(NotIdle, match=rf"{stream} \(orders\): 1 pending"):
            await run.until_idle(timeout=0.5)
        release.set()
        await run.until_idle(timeout=10.0)


async def test_until_idle_sees_unread_entries_of_an_app_that_is_not_running(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()

    @app.handler(stream, group="orders")
    async def handle(msg):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(NotIdle, match="no group on"):
        await until_idle(app, redis_url, timeout=0.1)
    async with running(app, redis_url) as run:
        await run.until_idle(timeout=10.0)  # empty: idle as soon as it started
    await aredis.xadd(stream, {"data": "{}"})  # nobody reads it now
    with pytest.raises(NotIdle, match=rf"unread on {stream}\b"):
        await until_idle(app, redis_url, timeout=0.1)
    async with running(app, redis_url) as run:
        await run.until_idle(timeout=10.0)


async def test_running_returns_once_the_consumer_is_registered_and_stops_on_exit(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()

    @app.handler(stream, group="orders")
    async def handle(msg):  # type: ignore[no-untyped-def]
        return None

    async with running(app, redis_url) as run:
        for key in (stream, retry_stream(stream, "orders")):
            consumers = await aredis.xinfo_consumers(key, "orders")
            assert run.consumer in {row["name"].decode() for row in consumers}
        assert not run.task.done()
    assert run.task.done() and run.task.exception() is None  # stopped gracefully


async def test_running_raises_the_apps_own_error_when_it_cannot_start(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="no handlers"):
        async with running(App(), redis_url):
            pytest.fail("the block must not run")
