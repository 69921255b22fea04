"""Redis restarted without persistence under load: the worker carries on (issue 9).

Such a restart wipes the streams, the groups and the schedule. Messages written before it
and not yet handled are gone (nothing can bring them back: that is what persistence is
for); everything written after it must be handled, and the worker must say what happened.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import redis.asyncio

from redrive import App, RetryPolicy
from redrive.testing import RedisProcess
from tests.integration.helpers import running, until

pytestmark = pytest.mark.chaos

RESTARTS = 5


async def publish(url: str, stream: str, first: int, count: int) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        pipe = client.pipeline(transaction=False)
        for n in range(first, first + count):
            pipe.xadd(stream, {"data": json.dumps({"n": n})})
        await pipe.execute()
    finally:
        await client.aclose()


async def test_restarts_without_persistence_never_stop_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = "shop:orders"
    done: set[int] = set()
    app = App()

    # A short visibility timeout: the reclaim (every 0.25 s) and lease (0.17 s) loops
    # run often, so each restart finds them too, as well as the reader and the acks.
    @app.handler(
        stream, group="g", retry=RetryPolicy(max_retries=2, base_delay=0.05), visibility_timeout=1.0
    )
    async def handle(msg):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.002)
        n = msg.data["n"]
        if n % 10 == 0 and msg.attempt == 1:
            raise TimeoutError("flaky")  # some retries in flight too
        done.add(n)

    caplog.set_level(logging.WARNING, "redrive")
    with RedisProcess() as server:  # appendonly no, save "": a restart keeps nothing
        async with running(app, server.url, block_ms=100) as worker:
            first = 0
            for _ in range(RESTARTS):
                await publish(server.url, stream, first, 1_000)  # a backlog: busy
                first += 1_000
                await asyncio.sleep(0.15)
                await asyncio.to_thread(server.kill)
                await asyncio.to_thread(server.start)
                after = range(first, first + 200)
                await publish(server.url, stream, first, 200)
                first += 200
                await until(lambda a=after: set(a) <= done, 20, "what was written after")
                assert not worker.done(), worker  # still serving

    restarts = [r.getMessage() for r in caplog.records if "restarted (run_id" in r.getMessage()]
    assert len(restarts) >= RESTARTS, restarts
    # What a restart wiped is reported, not hidden: each warning says so.
    assert all("what was not read before is gone" in m for m in restarts)
