"""Resharding an active stream's slot under load (issue 16): the worker keeps running,
the streams on other masters never pause, the moved stream pauses briefly, nothing is
lost. The slot is moved as ``redis-cli --cluster reshard`` does, key by key, slowly, so
the worker spends seconds on a migrating slot (TRYAGAIN and ASK on its multi-key
scripts, keys on two nodes)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
import redis.asyncio

from redrive import App, RetryPolicy
from redrive.testing import available_redis_binaries, running
from redrive.testing.cluster import RedisClusterProcess
from redrive.testing.running import options_for_tests

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

RATE = 300  # messages per second per stream
SECONDS = 6.0


@pytest.fixture
def cluster() -> RedisClusterProcess:  # type: ignore[misc]
    binaries = available_redis_binaries()
    if not binaries:
        pytest.skip("no redis-server")
    with RedisClusterProcess(binaries[0], masters=3) as c:
        yield c


def _streams(cluster: RedisClusterProcess) -> tuple[str, str, object]:
    """A stream to move, one on another master, and a third master to move it to."""
    moved, other = "shop:orders", "shop:payments"
    i = 0
    while cluster.master_of(other).port == cluster.master_of(moved).port:
        i += 1
        other = f"shop:payments{i}"
    owners = {cluster.master_of(moved).port, cluster.master_of(other).port}
    target = next(n for n in cluster.nodes if n.port not in owners)
    return moved, other, target


async def test_a_reshard_of_an_active_stream_costs_only_a_short_pause_of_it(
    cluster: RedisClusterProcess,
) -> None:
    moved, other, target = _streams(cluster)
    url = cluster.url
    app = App(url)
    seen: dict[str, dict[int, float]] = {moved: {}, other: {}}

    for stream in (moved, other):

        @app.handler(stream, group="g", retry=RetryPolicy(base_delay=0.05, jitter="none"))
        async def handle(msg, stream=stream):  # type: ignore[no-untyped-def]
            n = msg.data["n"]
            if n % 10 == 0 and msg.attempt == 1:
                raise TimeoutError("fails once: a retry through the schedule")
            seen[stream].setdefault(n, time.monotonic())

    client = redis.asyncio.RedisCluster.from_url(cluster.plain_url)
    total = int(RATE * SECONDS)

    async def produce() -> None:
        for n in range(total):
            for stream in (moved, other):
                await client.xadd(stream, {"data": json.dumps({"n": n})})
            await asyncio.sleep(1 / RATE)

    async with running(app, url, options=options_for_tests(block_ms=200)) as run:
        producer = asyncio.create_task(produce())
        await asyncio.sleep(1.0)
        keys = await asyncio.to_thread(cluster.reshard, moved, target, pause=0.3)
        await producer
        deadline = time.monotonic() + 30
        while any(len(s) < total for s in seen.values()):
            assert not run.task.done(), "the worker stopped"
            assert time.monotonic() < deadline, {k: len(v) for k, v in seen.items()}
            await asyncio.sleep(0.05)
        assert not run.task.done()
    await client.aclose()
    assert keys >= 3  # the stream, its retry stream and more moved one by one
    assert cluster.master_of(moved).port == target.port
    for stream in (moved, other):
        assert sorted(seen[stream]) == list(range(total)), stream  # nothing lost
    times = sorted(seen[other].values())
    gap = max(b - a for a, b in itertools.pairwise(times))
    print(f"longest pause of the stream on another master: {gap:.2f}s")
    assert gap <= 1.0, f"the stream on another master paused {gap:.2f}s"


async def test_a_key_migrated_under_a_blocked_read_is_read_again_on_its_new_node(
    cluster: RedisClusterProcess,
) -> None:
    moved, _, target = _streams(cluster)
    app = App(cluster.url)
    seen: list[int] = []

    @app.handler(moved, group="g")
    async def handle(msg):  # type: ignore[no-untyped-def]
        seen.append(msg.data["n"])

    client = redis.asyncio.RedisCluster.from_url(cluster.plain_url)
    async with running(app, cluster.url, options=options_for_tests(block_ms=5000)) as run:
        await client.xadd(moved, {"data": json.dumps({"n": 1})})
        deadline = time.monotonic() + 10
        while seen != [1]:
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # blocked in XREADGROUP on the stream's first node
        await asyncio.to_thread(cluster.reshard, moved, target)
        await client.xadd(moved, {"data": json.dumps({"n": 2})})  # on the new node
        deadline = time.monotonic() + 15
        while seen != [1, 2]:
            assert not run.task.done(), "the worker stopped"
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.02)
    await client.aclose()


async def test_a_worker_started_while_its_slot_migrates_waits_and_then_consumes(
    cluster: RedisClusterProcess,
) -> None:
    moved, _, target = _streams(cluster)
    seen: list[int] = []

    def app_of() -> App:
        app = App(cluster.url)

        @app.handler(moved, group="g")
        async def handle(msg):  # type: ignore[no-untyped-def]
            seen.append(msg.data["n"])

        return app

    client = redis.asyncio.RedisCluster.from_url(cluster.plain_url)
    await client.xadd(moved, {"data": json.dumps({"n": 0})})
    async with running(app_of(), cluster.url, options=options_for_tests()):  # its keys exist
        while seen != [0]:
            await asyncio.sleep(0.02)
    for n in range(1, 20):
        await client.xadd(moved, {"data": json.dumps({"n": n})})
    resharding = asyncio.create_task(asyncio.to_thread(cluster.reshard, moved, target, pause=0.7))
    await asyncio.sleep(1.0)  # some of the slot's keys moved, the others not yet
    async with running(app_of(), cluster.url, options=options_for_tests()) as run:
        await resharding
        deadline = time.monotonic() + 20
        while sorted(seen) != list(range(20)):
            assert not run.task.done(), "the worker stopped"
            assert time.monotonic() < deadline, sorted(seen)
            await asyncio.sleep(0.05)
    await client.aclose()
