"""Each loop of a consumer keeps itself running: an error in one never stops the others.

A worker runs many loops per handler (the reader, the lanes, the ack flush, reclaim,
leases, counters, the time-limit watchdog, DLQ retention). Each already handles the
errors it expects (a lost connection, NOGROUP); anything else it did not foresee (a
cluster error while a slot migrates, a bug in a corner) used to end the consumer, and with
it the whole worker: every stream stopped for one stream's trouble. :func:`keep_running`
logs such an error with its stream and loop at WARNING, waits (backing off) and starts
the loop again; only what no retry can fix (an ACL refusal, a wrong password, bad
configuration: :func:`is_fatal`) is raised, and stops the worker with one line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError

from redrive.errors import ConfigError
from redrive.store.connection import permission_hint

log = logging.getLogger("redrive.consumer")

#: Backoff between restarts of a loop: first and longest wait (seconds).
BACKOFF = (0.1, 10.0)
#: A loop that ran this long before failing starts again from the first wait.
HEALTHY_AFTER = 60.0


def is_fatal(exc: BaseException) -> bool:
    """Whether no retry can fix ``exc``: the worker stops with it."""
    if isinstance(exc, ConfigError | AuthenticationError | AuthorizationError):
        return True
    return isinstance(exc, ResponseError) and permission_hint(exc) is not None


async def keep_running(
    loop: Callable[[], Awaitable[None]],
    *,
    what: str,
    stream: str,
    before_restart: Callable[[], None] | None = None,
) -> None:
    """Run ``loop()``; when it fails with an error that is not fatal, log it and run it
    again after a backoff. A loop that returns is done; a cancellation ends it."""
    failures = 0
    while True:
        started = time.monotonic()
        try:
            await loop()
            return
        except Exception as exc:
            if is_fatal(exc):
                raise
            if time.monotonic() - started > HEALTHY_AFTER:
                failures = 0
            failures += 1
            first, longest = BACKOFF
            wait = min(longest, first * 2 ** (failures - 1))
            log.warning(
                "%s of %s failed (%s: %s); restarting it in %.1fs",
                what, stream, type(exc).__name__, exc, wait,
                exc_info=failures == 1, extra={"stream": stream, "loop": what},
            )  # fmt: skip
        await asyncio.sleep(wait)
        if before_restart is not None:
            before_restart()
