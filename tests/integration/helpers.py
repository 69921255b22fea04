"""Helpers for integration tests: run an App in-process, poll with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio

from redrive import App
from redrive.runtime.settings import WorkerOptions


@asynccontextmanager
async def running(
    app: App, url: str, *, consumer: str = "c1", **options: Any
) -> AsyncIterator[asyncio.Task[None]]:
    """Serve ``app`` in this event loop; stop gracefully (and re-raise its error) on exit."""
    stop = asyncio.Event()
    opts = WorkerOptions(consumer=consumer, **options)
    task = asyncio.create_task(app.serve(options=opts, stop=stop, redis_url=url))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def until(
    check: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


async def dead_letters(r: redis.asyncio.Redis, stream: str) -> list[dict[str, bytes]]:
    """Entries of ``dlq:{stream}`` as dicts with str keys."""
    from redrive.store.keys import dlq

    entries = await r.xrange(dlq(stream))
    return [{k.decode(): v for k, v in fields.items()} for _, fields in entries]


async def pending(r: redis.asyncio.Redis, stream: str, group: str) -> int:
    """Entries pending in ``group`` on ``stream`` and on its retry stream."""
    from redrive.store.keys import retry_stream

    total = 0
    for key in (stream, retry_stream(stream, group)):
        if await r.exists(key):
            total += (await r.xpending(key, group))["pending"]
    return total


async def held_claims(r: redis.asyncio.Redis, claims: str) -> list[bytes]:
    """The idempotency keys claimed in the claims hash ``claims``, sorted (without the
    field ``''`` that keeps the hash a hash table; ``idem_claim.lua``)."""
    return sorted(k for k in await r.hkeys(claims) if k)
