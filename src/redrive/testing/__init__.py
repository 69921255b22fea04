"""Public testing helpers: a private Redis, an app running against it until idle.

- :class:`RedisProcess` — a private ``redis-server`` on a free port (never 6379), stopped
  by pid; ``kill()`` / ``restart()`` for crash tests. :mod:`redrive.testing.cluster` has
  a Redis Cluster of them.
- :func:`running` — serve an app in the test's event loop until the block ends; returns
  once its groups exist and its consumer is registered.
- :func:`until_idle` — wait until every handler's streams have nothing unread, pending or
  due in the retry schedule; :class:`NotIdle` names what is left.

Example (see ``docs/testing.md``)::

    from redrive.testing import RedisProcess, running

    with RedisProcess() as proc:
        async with running(app, proc.url) as run:
            ...                             # publish
            await run.until_idle(timeout=5.0)
"""

from redrive.store.local import RedisProcess
from redrive.store.server import (
    SHARED_PORT,
    available_redis_binaries,
    free_port,
    redis_server_version,
)
from redrive.testing.idle import NotIdle, Outstanding, outstanding, until_idle
from redrive.testing.running import (
    AppStopped,
    NotStarted,
    RunningApp,
    options_for_tests,
    running,
)

__all__ = [
    "SHARED_PORT",
    "AppStopped",
    "NotIdle",
    "NotStarted",
    "Outstanding",
    "RedisProcess",
    "RunningApp",
    "available_redis_binaries",
    "free_port",
    "options_for_tests",
    "outstanding",
    "redis_server_version",
    "running",
    "until_idle",
]
