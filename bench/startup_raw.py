"""The plain loop bench/startup.py measures next to the worker: redis.asyncio only.

    python bench/startup_raw.py URL STREAM MARK

Creates the group (at 0, MKSTREAM, as the worker does), reads with XREADGROUP, writes
``time.time()`` and ``time.process_time()`` to MARK for the first message (as
bench/startup_app.py does), acks it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import redis.asyncio
from redis.exceptions import ResponseError


async def main(url: str, stream: str, mark: Path) -> None:
    r = redis.asyncio.Redis.from_url(url)
    try:
        await r.xgroup_create(stream, "startup", id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    while True:
        reply = await r.xreadgroup("startup", "c", {stream: ">"}, count=100, block=1000)
        if reply:
            break
    aside = mark.with_suffix(".tmp")
    aside.write_text(f"{time.time()!r} {time.process_time()!r}")
    aside.replace(mark)
    [(_, entries)] = reply
    await r.xack(stream, "startup", *(entry_id for entry_id, _ in entries))
    await r.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
