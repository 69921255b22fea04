"""Idle cost: commands per second and connections of one idle worker process, by handlers.

A private ``redis-server``; an ``App`` with N handlers on N empty streams is served in
this process; after a few seconds of start-up, ``INFO commandstats`` is read twice,
``--seconds`` apart (commands run inside scripts count too, as Redis counts them; INFO
itself is left out). Target (issue 12): <= 50 commands/s per process whatever the number
of handlers.

    .venv/bin/python bench/idle.py [--handlers 1,10,30,100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import redis

from redrive import App
from redrive.runtime.settings import WorkerOptions
from redrive.testing import RedisProcess


def calls(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def idle(handlers: int, seconds: float) -> None:
    with RedisProcess() as server:
        app = App(server.url)
        for i in range(handlers):

            @app.handler(f"idle:{i}", group="g")
            async def handle(msg: object) -> None:
                pass

        stop = asyncio.Event()
        task = asyncio.create_task(app.serve(options=WorkerOptions(consumer="idle"), stop=stop))
        await asyncio.sleep(4)  # start-up: groups, scripts, the first schedule checks
        r = redis.Redis.from_url(server.url)
        before, t = calls(r), time.monotonic()
        await asyncio.sleep(seconds)
        after, took = calls(r), time.monotonic() - t
        clients = int(r.info("clients")["connected_clients"]) - 1  # this one
        r.close()
        stop.set()
        await task
    rates = {k: (after[k] - before.get(k, 0)) / took for k in after if k != "info"}
    total = sum(rates.values())
    top = ", ".join(f"{k} {v:.1f}" for k, v in sorted(rates.items(), key=lambda x: -x[1]) if v)
    print(f"{handlers:>4} handlers: {total:6.1f} commands/s, {clients:>4} connections   ({top})")


async def main(counts: list[int], seconds: float) -> None:
    for n in counts:
        await idle(n, seconds)
    print("target: <= 50 commands/s per process whatever the number of handlers")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handlers", default="1,10,30,100")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main([int(x) for x in args.handlers.split(",")], args.seconds))
