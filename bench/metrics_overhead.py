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

import redis.asyncio as aioredis

# The same loops as throughput.py (this script's folder is on sys.path when it runs).
from throughput import publish, raw_loop, redrive_loop

from redrive.testing import RedisProcess


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
