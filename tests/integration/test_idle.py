"""An idle worker: a bounded number of commands and connections whatever its number of
handlers, and a stop that does not wait out the (long) BLOCK of its idle reads."""

from __future__ import annotations

import asyncio
import time

import redis

from redrive import App
from redrive.runtime.scheduler import CHECKS_PER_SECOND
from redrive.testing import RedisProcess, running
from redrive.testing.running import options_for_tests


def commands(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


async def test_an_idle_worker_sends_few_commands_whatever_its_handlers() -> None:
    with RedisProcess() as server:
        app = App(server.url)
        for i in range(40):

            @app.handler(f"idle:{i}", group="g")
            async def handle(msg: object) -> None:
                pass

        r = redis.Redis.from_url(server.url)
        async with running(app, server.url, options=options_for_tests(block_ms=1000)):
            await asyncio.sleep(4)  # past the start-up checks
            before, t = commands(r), time.monotonic()
            await asyncio.sleep(4)
            rate = (commands(r) - before) / (time.monotonic() - t)
            clients = int(r.info("clients")["connected_clients"])
        r.close()
    # Per second: scheduler checks (2 commands each), blocked reads, heartbeats, reclaims.
    assert rate <= 50, rate
    assert rate >= CHECKS_PER_SECOND  # it does check the schedules
    assert clients <= 2 * 40 + 12, clients


async def test_an_idle_worker_stops_at_once_despite_a_long_block(
    redis_url: str, prefix: str
) -> None:
    app = App(redis_url)

    @app.handler(f"{prefix}orders", group="g")
    async def handle(msg: object) -> None:
        pass

    options = options_for_tests(block_ms=10_000)
    async with running(app, redis_url, options=options) as run:
        await asyncio.sleep(0.5)  # the reader is blocked in XREADGROUP now
        started = time.monotonic()
        run.stop_event.set()
        await run.task
        took = time.monotonic() - started
    assert took < 2.0, f"stop took {took:.1f}s (BLOCK is 10s: the read was not unblocked)"
