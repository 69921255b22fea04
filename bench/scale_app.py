"""The app bench/scale.py runs in each worker process (configured by environment).

SCALE_STREAMS: comma-separated stream names; SCALE_KIND: ``noop``, ``io`` (an
``await asyncio.sleep(0.005)``, standing in for a call to another service) or ``cpu``
(100 µs of CPU per message, a busy loop on the clock, so that one process is CPU-bound
by the handler and not by redrive or Redis).
"""

from __future__ import annotations

import asyncio
import os
import time

from redrive import App

app = App()
_KIND = os.environ.get("SCALE_KIND", "noop")
CPU_SECONDS = 100e-6


async def _noop(msg: object) -> None:
    return None


async def _io(msg: object) -> None:
    await asyncio.sleep(0.005)


async def _cpu(msg: object) -> None:
    # Spins in the event loop (as a handler parsing, hashing or rendering would): the
    # process does nothing else meanwhile, so only more processes add throughput.
    end = time.perf_counter() + CPU_SECONDS
    while time.perf_counter() < end:
        pass


_HANDLERS = {"noop": _noop, "io": _io, "cpu": _cpu}

for _stream in os.environ.get("SCALE_STREAMS", "bench:scale").split(","):
    app.handler(_stream, group="scale")(_HANDLERS[_KIND])
