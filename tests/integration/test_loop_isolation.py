"""One handler's trouble stays its own: an unexpected error in one loop of one consumer
is logged with its stream and that loop runs again, while every other loop and handler
goes on; a stream key deleted under a blocked read is read again (issue 16)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import redis.asyncio

from redrive import App
from redrive.store import keys
from redrive.testing import running
from redrive.testing.running import options_for_tests
from tests.integration.helpers import until


async def test_a_failing_loop_of_one_handler_stops_neither_it_nor_the_others(
    aredis: redis.asyncio.Redis, redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken, healthy = f"{prefix}broken", f"{prefix}healthy"
    # Someone overwrote the broken handler's stats hash and retry schedule with strings:
    # every HINCRBY and promotion on them now fails with WRONGTYPE.
    await aredis.set(keys.stats(broken, "g"), "oops")
    await aredis.set(keys.retry_due(broken, "g"), "oops")
    app = App(redis_url)
    seen: dict[str, list[int]] = {broken: [], healthy: []}

    for stream in (broken, healthy):

        @app.handler(stream, group="g")
        async def handle(msg, stream=stream):  # type: ignore[no-untyped-def]
            seen[stream].append(msg.data["n"])

    caplog.set_level(logging.WARNING, logger="redrive")
    options = options_for_tests(stats_interval=0.05)
    async with running(app, redis_url, options=options) as run:
        for n in range(20):
            await aredis.xadd(broken, {"data": json.dumps({"n": n})})
            await aredis.xadd(healthy, {"data": json.dumps({"n": n})})
        await until(lambda: len(seen[broken]) == 20 and len(seen[healthy]) == 20, 10,
                    "every message of both handlers")  # fmt: skip
        await until(lambda: any("stats of " + broken in r.getMessage() for r in caplog.records),
                    5, "a warning naming the loop and its stream")  # fmt: skip
        assert not run.task.done()  # the worker goes on
        # Once the key is repaired, the restarted loop publishes the counters again.
        await aredis.delete(keys.stats(broken, "g"))
        await until(lambda: _succeeded(aredis, broken, 20), 15, "the broken handler's counters")
        assert await _succeeded(aredis, healthy, 20)
    assert sorted(seen[broken]) == list(range(20)) and sorted(seen[healthy]) == list(range(20))


async def _succeeded(r: redis.asyncio.Redis, stream: str, n: int) -> bool:
    return int(await r.hget(keys.stats(stream, "g"), "succeeded") or 0) == n


@pytest.mark.parametrize("which", ["retry", "source"])
async def test_a_stream_deleted_under_a_blocked_read_is_read_again(
    aredis: redis.asyncio.Redis, redis_url: str, prefix: str, which: str
) -> None:
    stream = f"{prefix}orders"
    app = App(redis_url)
    seen: list[int] = []

    @app.handler(stream, group="g")
    async def handle(msg):  # type: ignore[no-untyped-def]
        seen.append(msg.data["n"])

    async with running(app, redis_url, options=options_for_tests(block_ms=5000)) as run:
        await aredis.xadd(stream, {"data": json.dumps({"n": 1})})
        await until(lambda: seen == [1], 5, "the first message")
        await asyncio.sleep(0.2)  # blocked in XREADGROUP again
        await aredis.delete(keys.retry_stream(stream, "g") if which == "retry" else stream)
        # Redis 7 ends the read with UNBLOCKED; 6.2 with NOGROUP, or not at all.
        await asyncio.sleep(0.3)
        await aredis.xadd(stream, {"data": json.dumps({"n": 2})})
        await until(lambda: seen == [1, 2], 10, "a message after the deletion")
        assert not run.task.done()
