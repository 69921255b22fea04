"""Throughput: redrive with a no-op handler against a plain redis.asyncio loop.

Both consume the same number of pre-published messages from a private ``redis-server``
in the same run, in interleaved rounds; the script prints msgs/s for each and the ratio
(redrive / raw). Target (issue 2): ratio >= 0.85.

    .venv/bin/python bench/throughput.py [--messages 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import redis.asyncio as aioredis

from redrive import App
from redrive.runtime.settings import WorkerOptions
from redrive.testing import RedisProcess

BODY = '{"order_id": %d, "amount": 12.5, "sku": "ABC-123", "qty": 2}'


async def publish(r: aioredis.Redis, stream: str, n: int) -> None:
    await r.delete(stream, f"redrive:stats:{{{stream}}}:redrive")
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"data": BODY % i})
        if i % 1000 == 999:
            await pipe.execute()
    await pipe.execute()


async def raw_loop(r: aioredis.Redis, stream: str, n: int) -> float:
    """The plain loop: XREADGROUP COUNT 100, then one XACK for the batch."""
    await r.xgroup_create(stream, "raw", id="0")
    done = 0
    start = time.perf_counter()
    while done < n:
        reply = await r.xreadgroup("raw", "c", {stream: ">"}, count=100, block=1000)
        ids = [entry_id for _, entries in reply for entry_id, _ in entries]
        if ids:
            await r.xack(stream, "raw", *ids)
        done += len(ids)
    return n / (time.perf_counter() - start)


async def redrive_loop(
    url: str, r: aioredis.Redis, stream: str, n: int, metrics: bool = True
) -> float:
    """redrive with a no-op async handler, until every message is handled and acked."""
    app = App(url)
    handled = 0
    finished = asyncio.Event()

    @app.handler(stream, group="redrive")
    async def noop(msg: object) -> None:
        nonlocal handled
        handled += 1
        if handled == n:
            finished.set()

    stop = asyncio.Event()
    start = time.perf_counter()
    options = WorkerOptions(consumer="c", metrics=metrics)
    task = asyncio.create_task(app.serve(options=options, stop=stop))
    await finished.wait()
    while (await r.xpending(stream, "redrive"))["pending"]:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    return n / elapsed


async def main(messages: int, rounds: int) -> None:
    with RedisProcess() as server:
        r = aioredis.Redis.from_url(server.url)
        raw: list[float] = []
        ours: list[float] = []
        for i in range(rounds):
            await publish(r, "bench:raw", messages)
            raw.append(await raw_loop(r, "bench:raw", messages))
            await publish(r, "bench:redrive", messages)
            ours.append(await redrive_loop(server.url, r, "bench:redrive", messages))
            print(f"round {i + 1}: raw {raw[-1]:>9,.0f} msg/s   redrive {ours[-1]:>9,.0f} msg/s")
        await r.aclose()
    raw_m, ours_m = statistics.median(raw), statistics.median(ours)
    print(
        f"median: raw {raw_m:,.0f} msg/s, redrive {ours_m:,.0f} msg/s, "
        f"ratio {ours_m / raw_m:.2f} (target >= 0.85)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rounds))
