"""The process scheduler on real Redis: one schedule's failure never holds back another's
retries, and a retry of this process is promoted on time."""

from __future__ import annotations

import asyncio
import socket
import time

from redrive.runtime.scheduler import Scheduler
from redrive.store.connection import async_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_dead_node_delays_only_its_own_schedule(redis_url: str, prefix: str) -> None:
    live = async_client(redis_url)
    dead = async_client(f"redis://127.0.0.1:{free_port()}/0")
    s = Scheduler(interval=0.05)
    s.add(client=dead, due_key=f"retry:{{{prefix}x}}:g:due", retry_key=f"retry:{{{prefix}x}}:g",
          stream=f"{prefix}x")  # fmt: skip
    ok = s.add(client=live, due_key=f"retry:{{{prefix}}}:g:due", retry_key=f"retry:{{{prefix}}}:g",
               stream=prefix)  # fmt: skip
    due_ms = int(time.time() * 1000) + 200
    await live.zadd(ok.due_key, {b"\x92\xa4data\xa1x": due_ms})  # msgpack [data, x]
    ok.scheduled(due_ms)
    task = asyncio.create_task(s.loop())
    try:
        async with asyncio.timeout(3):
            while not await live.xlen(ok.retry_key):
                await asyncio.sleep(0.01)
        late_ms = time.time() * 1000 - due_ms
        assert late_ms < 150, late_ms
        bad = next(x for x in s.schedules if x is not ok)
        assert bad.failures >= 1  # it failed, backed off, and did not stop the loop
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await live.aclose()
        await dead.aclose()
