"""The app bench/soak.py runs in a ``redrive worker`` process (configured by environment).

SOAK_STREAM: the stream; SOAK_FAIL_EVERY: every N-th message fails its first run (a
transient ``ConnectionError``; 10 → 10%); SOAK_RETRY_DELAY: seconds before its retry.
The body is ``{"n": <number>, ...}`` (a ``pad`` string in the large-body mode).
"""

from __future__ import annotations

import os

from redrive import App, Message, RetryPolicy

app = App()
_FAIL_EVERY = int(os.environ.get("SOAK_FAIL_EVERY", "10"))
_DELAY = float(os.environ.get("SOAK_RETRY_DELAY", "0.05"))


@app.handler(
    os.environ.get("SOAK_STREAM", "bench:soak"),
    group="soak",
    retry=RetryPolicy(max_retries=3, base_delay=_DELAY, max_delay=max(_DELAY, 1.0)),
)
async def handle(msg: Message) -> None:
    if msg.attempt == 1 and msg.data["n"] % _FAIL_EVERY == 0:
        raise ConnectionError("the gateway hung up")
