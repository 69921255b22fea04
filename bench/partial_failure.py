"""Partial failure: healthy throughput while a share of keys always fails (issue 9).

A backlog of messages on one stream; the handler raises ``TimeoutError`` for the keys
whose hash falls in the failing share (one merchant's gateway is down) and succeeds for
the rest. ``RetryPolicy(max_retries=3, base_delay=0.05)``, the default breaker, one
consumer. For each share the script prints the healthy messages' throughput (healthy
handled / time to the last healthy success), its ratio to the 0% run of the same
process, the longest gap between two successes while healthy messages remained, and how
often the breaker opened. Target: ratio >= 0.5 up to 10% failing keys, no gap near 5 s.

    .venv/bin/python bench/partial_failure.py [--messages 20000] [--shares 0,3,10,40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import zlib
from dataclasses import dataclass

import redis.asyncio as aioredis

from redrive import App, RetryPolicy
from redrive.runtime.settings import WorkerOptions
from redrive.store.keys import dlq, stats
from redrive.testing import RedisProcess


def failing(key: int, share: float) -> bool:
    """Whether ``key`` belongs to the failing share (by a hash, as a merchant id would)."""
    return zlib.crc32(str(key).encode()) % 10_000 < share * 10_000


def server_cpu(pid: int | None) -> float:
    """CPU seconds the redis-server has used (utime + stime from /proc)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    share: float
    healthy: int
    seconds: float
    longest_gap: float
    opened: int
    cpu: float  # worker CPU seconds to the last healthy success
    server: float  # redis-server CPU seconds in the same time

    @property
    def rate(self) -> float:
        return self.healthy / self.seconds


async def publish(r: aioredis.Redis, stream: str, n: int) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"data": json.dumps({"order_id": i, "merchant": i})})
        if i % 1000 == 999:
            await pipe.execute()
    await pipe.execute()


async def run_share(server: RedisProcess, r: aioredis.Redis, share: float, n: int) -> Run:
    url = server.url
    stream = f"bench:partial:{share}"
    await publish(r, stream, n)
    healthy = sum(not failing(i, share) for i in range(n))
    app = App(url)
    done = 0
    last = gap = 0.0
    finished = asyncio.Event()

    @app.handler(stream, group="g", retry=RetryPolicy(max_retries=3, base_delay=0.05))
    async def handle(msg: object) -> None:
        nonlocal done, last, gap
        if failing(msg.data["merchant"], share):  # type: ignore[attr-defined]
            raise TimeoutError("gateway of this merchant is down")
        now = time.perf_counter()
        gap = max(gap, now - last)
        last = now
        done += 1
        if done == healthy:
            finished.set()

    stop = asyncio.Event()
    cpu0, server0 = time.process_time(), server_cpu(server.pid)
    start = last = time.perf_counter()
    task = asyncio.create_task(app.serve(options=WorkerOptions(consumer="c"), stop=stop))
    await finished.wait()
    seconds = time.perf_counter() - start
    cpu, server_s = time.process_time() - cpu0, server_cpu(server.pid) - server0
    want_dead = n - healthy
    while await r.xlen(dlq(stream)) < want_dead:  # failing ones end in the DLQ
        await asyncio.sleep(0.05)
    stop.set()
    await task
    opened = int(await r.hget(stats(stream, "g"), "breaker_opened") or 0)
    return Run(share, healthy, seconds, gap, opened, cpu, server_s)


async def main(messages: int, shares: list[float]) -> None:
    with RedisProcess() as server:
        r = aioredis.Redis.from_url(server.url)
        runs = [await run_share(server, r, s, messages) for s in shares]
        await r.aclose()
    base = runs[0].rate
    for run in runs:
        print(
            f"{run.share:>4.0%} failing keys: healthy {run.rate:>9,.0f} msg/s  "
            f"ratio {run.rate / base:.2f}  longest gap {run.longest_gap * 1000:>6.0f} ms  "
            f"breaker opened {run.opened}x  cpu: worker {run.cpu:.2f}s, redis {run.server:.2f}s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--shares", default="0,3,10,40", help="failing shares in percent")
    args = parser.parse_args()
    shares = [float(s) / 100 for s in args.shares.split(",")]
    if shares[0] != 0:
        shares.insert(0, 0.0)
    asyncio.run(main(args.messages, shares))
