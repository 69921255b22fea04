"""Snapshots and supervised jobs at scale: a million dead letters on a private Redis.

Seeds ``--entries`` dead letters (the runtime's own record builder) into one DLQ, takes
a snapshot of a filter on the error type, and prints: how long ``take`` took, the longest
command Redis ran meanwhile (its SLOWLOG, everything over 2 ms: a snapshot must never
hold Redis), the refs list's memory, a page of refs at the end of the list, then the rate
of a replay job without a rate limit over ``--seconds``. Target (issue 13): no command
of a snapshot holds Redis for seconds at 1M.

    .venv/bin/python bench/jobs_1m.py [--entries 1000000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from redis.asyncio import Redis

from redrive import dlq
from redrive.core.message import Message
from redrive.core.records import Failure, dead_record
from redrive.dlq import jobs, snapshot
from redrive.store import keys
from redrive.testing import RedisProcess

STREAM = "bench:orders"


async def seed(client: Redis, entries: int) -> None:
    msg = Message(stream=STREAM, id="1-1", fields={b"data": b'{"order_id": 1}'}, attempt=4)
    failure = Failure("TimeoutError", "transient", "timeout after 3012 ms", "Traceback …",
                      1_700_000_000_000, "c1", 12.5)  # fmt: skip
    flat = dead_record(msg, failure, group="orders", reason="max_retries_exceeded")
    for start in range(0, entries, 10_000):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(10_000, entries - start)):
            pipe.execute_command("XADD", keys.dlq(STREAM), "*", *flat)
        await pipe.execute()
    await client.sadd(keys.STREAMS_INDEX, STREAM)
    await client.xgroup_create(STREAM, "orders", id="0", mkstream=True)


async def measure(url: str, entries: int, seconds: float) -> None:
    client = dlq.connect(url)
    began = time.perf_counter()
    await seed(client, entries)
    print(f"seeded {entries:,} dead letters in {time.perf_counter() - began:.1f} s")
    await client.config_set("slowlog-log-slower-than", 2000)  # µs
    await client.slowlog_reset()
    began = time.perf_counter()
    flt = dlq.Filter(streams=(STREAM,), error_type="TimeoutError")
    preview = await snapshot.take(client, flt)
    took = time.perf_counter() - began
    slow = await client.slowlog_get(128)
    longest = max(slow, key=lambda e: e["duration"], default=None)
    memory = await client.memory_usage(keys.snapshot_refs(preview.id)) or 0
    print(f"take: {preview.count:,} refs in {took:.1f} s ({preview.count / took:,.0f}/s); "
          f"refs list {memory / 1e6:.1f} MB")  # fmt: skip
    if longest is not None:
        ms = longest["duration"] / 1000
        print(f"  commands over 2 ms meanwhile: {len(slow)}, longest {ms:.1f} ms "
              f"({str(longest['command'])[:50]})")  # fmt: skip
    began = time.perf_counter()
    await snapshot.refs(client, preview.id, entries - 100, entries - 1)
    print(f"a page of 100 refs at the list's end: {(time.perf_counter() - began) * 1000:.2f} ms")
    job = await jobs.submit(client, jobs.JobSpec("replay", preview.id))
    stop = asyncio.Event()
    task = asyncio.create_task(dlq.JobRunner(client, name="bench").run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    moved = (await jobs.get(client, job.id)).moved
    print(f"replay job: {moved:,} moved in {seconds:.0f} s ({moved / seconds:,.0f}/s)")
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with RedisProcess() as proc:
        asyncio.run(measure(proc.url, args.entries, args.seconds))


if __name__ == "__main__":
    main()
