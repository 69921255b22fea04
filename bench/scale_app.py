"""The app bench/scale.py runs in each worker process (configured by environment).

SCALE_STREAMS: comma-separated stream names; SCALE_KIND: ``noop`` or ``io`` (an
``await asyncio.sleep(0.005)``, standing in for a call to another service).
"""

from __future__ import annotations

import asyncio
import os

from redrive import App

app = App()
_KIND = os.environ.get("SCALE_KIND", "noop")


async def _noop(msg: object) -> None:
    return None


async def _io(msg: object) -> None:
    await asyncio.sleep(0.005)


for _stream in os.environ.get("SCALE_STREAMS", "bench:scale").split(","):
    app.handler(_stream, group="scale")(_io if _KIND == "io" else _noop)
