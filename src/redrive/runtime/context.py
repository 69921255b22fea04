"""What a running app shares with its handlers, middleware and hooks: :func:`context`.

The worker sets the context before its consumers start; asyncio tasks inherit context
variables, so every handler run, middleware call and hook of that worker sees it, and two
apps served in one process each see their own.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from redis import Redis as SyncRedis
from redis.asyncio import Redis

from redrive.errors import ConfigError
from redrive.store.connection import redact_url


class AppContext:
    """The resolved Redis URL and the clients one worker shares with its handlers and hooks.

    ``redis`` (asyncio) and ``sync_redis`` (blocking, for ``def`` handlers in the thread
    pool) are plain redis-py clients on the worker's server, bytes replies, separate from
    the consumers' own connections: use them for side effects (ledgers, idempotency keys)
    instead of a client per module. Their pools connect on first use; ``sync_redis`` is
    made on first access (a blocking cluster client connects when made).

    Example::

        @app.handler("ecommerce:orders", group="billing")
        async def handle(msg):
            if await redrive.context().redis.set(f"seen:{msg.id}", 1, nx=True, ex=86400):
                ...
    """

    __slots__ = ("_lock", "_make_sync", "_sync", "redis", "url")

    def __init__(
        self,
        url: str,
        redis: Redis,
        make_sync: Callable[[], SyncRedis] | None = None,
    ) -> None:
        self.url = url
        self.redis = redis
        self._make_sync = make_sync
        self._sync: SyncRedis | None = None
        self._lock = threading.Lock()  # def handlers run in many threads at once

    @property
    def sync_redis(self) -> SyncRedis:
        """A blocking client on the same server, made on first access (thread-safe)."""
        with self._lock:
            if self._sync is None:
                if self._make_sync is None:
                    raise ConfigError("this AppContext was made without a blocking client")
                self._sync = self._make_sync()
            return self._sync

    async def aclose(self) -> None:
        """Close both clients (the worker does, after the shutdown hooks)."""
        await self.redis.aclose()
        with self._lock:
            if self._sync is not None:
                self._sync.close()
            self._make_sync = None

    def __repr__(self) -> str:
        return f"AppContext(url={redact_url(self.url)!r})"


#: A start-up or shutdown hook: ``async def hook(ctx: AppContext) -> None``.
Hook = Callable[[AppContext], Awaitable[None]]

_CURRENT: ContextVar[AppContext] = ContextVar("redrive.context")


def context() -> AppContext:
    """The :class:`AppContext` of the worker running this handler, middleware or hook.

    Raises :class:`~redrive.errors.ConfigError` outside a running worker (at import time,
    or in a thread the worker did not start).

    Example::

        from redrive import context

        async def handle(msg):
            await context().redis.hincrby("orders:seen", msg.id, 1)
    """
    try:
        return _CURRENT.get()
    except LookupError:
        raise ConfigError(
            "redrive.context() is only set inside a running worker: call it from a handler, "
            "a middleware or a hook (at run time, not at import)"
        ) from None


@contextmanager
def bound(ctx: AppContext) -> Iterator[AppContext]:
    """Make ``ctx`` what :func:`context` returns in this task and the tasks it starts."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)
