"""Snapshots and supervised jobs on a Redis Cluster: the snapshot, the job and the DLQs
of two streams live in different slots; a replay job and a delete job each handle exactly
their bound entries."""

from __future__ import annotations

import asyncio

import redis.asyncio

from redrive import dlq
from redrive.dlq import jobs, snapshot
from redrive.store import keys
from tests.integration.dlq_support import seed
from tests.integration.helpers import until


async def _finished(client: redis.asyncio.Redis, job_id: str) -> bool:
    return bool(await client.hget(keys.job(job_id), "summarized"))


async def test_jobs_across_slots_handle_exactly_their_snapshot(redis_url: str, prefix: str) -> None:
    client = dlq.connect(redis_url)
    orders, payments = f"{prefix}orders", f"{prefix}payments"
    try:
        await seed(client, orders, 120)
        await seed(client, payments, 30)
        flt = dlq.Filter(streams=(orders, payments))
        replayed = await snapshot.take(client, dlq.Filter(streams=(orders,)))
        deleted = await snapshot.take(client, dlq.Filter(streams=(payments,)))
        assert (await snapshot.load(client, replayed.id)).count == 120
        late = await seed(client, orders, 2, start=500)
        stop = asyncio.Event()
        task = asyncio.create_task(dlq.JobRunner(client, name="c").run(stop))
        a = await jobs.submit(client, dlq.JobSpec("replay", replayed.id, rate=500))
        b = await jobs.submit(client, dlq.JobSpec("delete", deleted.id))
        for job in (a, b):
            await until(lambda j=job: _finished(client, j.id), 30, f"job {job.id}")
        stop.set()
        await task
        left = [e.id for e in (await dlq.list_dead_letters(client, flt, limit=500)).entries]
        assert left == late
        assert await client.xlen(keys.retry_stream(orders, "orders")) == 120
        assert [(j.status, j.moved) for j in [await jobs.get(client, a.id),
                                                await jobs.get(client, b.id)]] == [
            ("done", 120), ("done", 30)]  # fmt: skip
    finally:
        await client.aclose()
