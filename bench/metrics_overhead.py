"""Metrics overhead: redrive with metrics on (histograms + per-second stream) against off.

Same method as ``throughput.py`` (pre-published messages, a no-op async handler, a private
``redis-server``), with the raw redis-py loop measured too, in interleaved rounds. Prints
msgs/s for each and the ratio on / off. Target (issue 5): on >= 0.90 x off.

    .venv/bin/python bench/metrics_overhead.py [--messages 50000] [--rounds 5]
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


async def redrive_loop(url: str, r: aioredis.Redis, stream: str, n: int, metrics: bool) -> float:
    """redrive with a no-op handler until all ``n`` are handled and acked."""
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
    options = WorkerOptions(consumer="c", metrics=metrics)
    start = time.perf_counter()
    task = asyncio.create_task(app.serve(options=options, stop=stop))
    await finished.wait()
    while (await r.xpending(stream, "redrive"))["pending"]:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    return n / elapsed


async def main(messages: int, rounds: int) -> None:
    results: dict[str, list[float]] = {"raw": [], "off": [], "on": []}
    with RedisProcess() as server:
        r = aioredis.Redis.from_url(server.url)
        for i in range(rounds):
            await publish(r, "bench:raw", messages)
            results["raw"].append(await raw_loop(r, "bench:raw", messages))
            # Alternate the order so neither mode always runs on a warmer server.
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                await publish(r, f"bench:{mode}", messages)
                rate = await redrive_loop(server.url, r, f"bench:{mode}", messages, mode == "on")
                results[mode].append(rate)
            print(
                f"round {i + 1}: raw {results['raw'][-1]:>9,.0f}   "
                f"metrics off {results['off'][-1]:>9,.0f}   on {results['on'][-1]:>9,.0f} msg/s"
            )
        await r.aclose()
    raw, off, on = (statistics.median(results[k]) for k in ("raw", "off", "on"))
    print(
        f"median: raw {raw:,.0f}, metrics off {off:,.0f} ({off / raw:.2f} of raw), "
        f"on {on:,.0f} ({on / raw:.2f} of raw) msg/s; on/off {on / off:.3f} (target >= 0.90)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rounds))
