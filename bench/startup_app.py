"""The app bench/startup.py starts with ``redrive worker``: it marks its first message.

STARTUP_MARK: the file the handler writes ``time.time()`` and ``time.process_time()`` to
when it handles its first message (atomically: written aside, then renamed);
STARTUP_STREAM: the stream it reads.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from redrive import App, Message

app = App()
_MARK = Path(os.environ.get("STARTUP_MARK", "startup.mark"))


@app.handler(os.environ.get("STARTUP_STREAM", "bench:startup"), group="startup")
async def first(msg: Message) -> None:
    if not _MARK.exists():
        aside = _MARK.with_suffix(".tmp")
        aside.write_text(f"{time.time()!r} {time.process_time()!r}")
        aside.replace(_MARK)
