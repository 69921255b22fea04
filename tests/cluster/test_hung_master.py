"""A hung master (SIGSTOP: a partition that looks like a live but silent node) delays
only the streams it serves (issue 16): the others keep flowing, the worker survives, and
the hung stream comes back once its replica is promoted."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time

import pytest
import redis.asyncio

from redrive import App
from redrive.testing import available_redis_binaries, running
from redrive.testing.cluster import RedisClusterProcess
from redrive.testing.running import options_for_tests

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

RATE = 200  # messages per second per stream
STOPPED = float(os.environ.get("REDRIVE_HUNG_SECONDS", "8"))


@pytest.fixture
def cluster() -> RedisClusterProcess:  # type: ignore[misc]
    binaries = available_redis_binaries()
    if not binaries:
        pytest.skip("no redis-server")
    with RedisClusterProcess(binaries[0], masters=3, replicas=1) as c:
        yield c


async def test_a_hung_master_pauses_only_its_own_streams(cluster: RedisClusterProcess) -> None:
    hung, other = "shop:orders", "shop:payments"
    i = 0
    while cluster.master_of(other).port == cluster.master_of(hung).port:
        i += 1
        other = f"shop:payments{i}"
    app = App(cluster.url)
    seen: dict[str, dict[int, float]] = {hung: {}, other: {}}
    for stream in (hung, other):

        @app.handler(stream, group="g")
        async def handle(msg, stream=stream):  # type: ignore[no-untyped-def]
            seen[stream].setdefault(msg.data["n"], time.monotonic())

    # Each stream's producer talks to its master directly, so a producer stalled by the
    # hung node never passes for a paused worker.
    direct = {s: redis.asyncio.Redis.from_url(cluster.master_of(s).url) for s in (hung, other)}
    sent: dict[str, list[int]] = {hung: [], other: []}
    running_producer = True

    async def produce(stream: str) -> None:
        for n in itertools.count():
            if not running_producer:
                return
            try:
                async with asyncio.timeout(0.5):
                    await direct[stream].xadd(stream, {"data": json.dumps({"n": n})})
                sent[stream].append(n)
            except Exception:  # the hung master (or, once demoted, MOVED): fate unknown
                await asyncio.sleep(0.2)
            await asyncio.sleep(1 / RATE)

    master = cluster.master_of(hung)
    assert master.pid is not None
    async with running(app, cluster.url, options=options_for_tests(block_ms=500)) as run:
        producers = [asyncio.create_task(produce(s)) for s in (hung, other)]
        await asyncio.sleep(1.0)
        os.kill(master.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            await asyncio.sleep(STOPPED)
        finally:
            os.kill(master.pid, signal.SIGCONT)
        await asyncio.sleep(2.0)
        running_producer = False
        await asyncio.gather(*producers)
        cluster.wait_healthy()
        late = redis.asyncio.RedisCluster.from_url(cluster.plain_url)
        await late.xadd(hung, {"data": json.dumps({"n": -1})})  # on the promoted replica
        await late.aclose()
        sent[hung].append(-1)
        deadline = time.monotonic() + 30
        while any(not set(sent[s]) <= set(seen[s]) for s in (hung, other)):
            assert not run.task.done(), "the worker stopped"
            assert time.monotonic() < deadline, {s: len(set(sent[s]) - set(seen[s])) for s in sent}
            await asyncio.sleep(0.05)
        assert not run.task.done()
    for client in direct.values():
        await client.aclose()
    times = sorted(seen[other].values())
    gap = max(b - a for a, b in itertools.pairwise(times))
    print(f"longest pause of the stream on a healthy master: {gap:.2f}s")
    assert gap <= 2.0, f"the stream on a healthy master paused {gap:.2f}s"
    assert seen[hung][-1] > stopped_at + STOPPED, "the hung stream never came back"
