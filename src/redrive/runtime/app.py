"""``App``: the registry of handlers and the entry point of a worker."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis

from redrive.core.breaker import BreakerPolicy
from redrive.core.classify import DEFAULT_RULES, ErrorClass, Rules
from redrive.core.retry import RetryPolicy
from redrive.errors import ConfigError
from redrive.runtime.settings import DEFAULT_TIMEOUT, MIB, HandlerSpec, Middleware, WorkerOptions

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULT_BREAKER = BreakerPolicy()


@dataclass(frozen=True, slots=True)
class AppContext:
    """What a start-up or shutdown hook receives: the resolved URL and a shared client.

    ``redis`` is the worker's own client (bytes replies); hooks and handlers may use it
    for their side effects (ledgers, idempotency keys) instead of opening another pool.
    """

    url: str
    redis: Redis


Hook = Callable[[AppContext], Awaitable[None]]


def is_async_handler(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` returns an awaitable: ``async def``, an object with ``async def
    __call__``, or a decorator (``functools.wraps``) around a coroutine function.

    Anything else runs in the thread pool; what it returns is still awaited if it is
    awaitable, so no run is ever acked without having happened.
    """
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(inspect.unwrap(fn)):
        return True
    # An instance whose class defines ``async def __call__`` (looked up on the type, as a
    # call does).
    call = inspect.getattr_static(type(fn), "__call__", None)
    return not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


def check_handler(fn: object) -> None:
    """Refuse, at registration, a handler that could never run: not callable, or not
    taking exactly one argument (the message)."""
    if not callable(fn):
        raise ConfigError(f"handler {fn!r} is not callable: decorate a function `def f(msg)`")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without a signature: nothing to check
    try:
        signature.bind(object())
    except TypeError:
        name = getattr(fn, "__qualname__", repr(fn))
        raise ConfigError(
            f"handler {name}{signature} must take one argument, the message: "
            f"`async def {getattr(fn, '__name__', 'handle')}(msg)`"
        ) from None


def check_middleware(mw: object) -> None:
    """Refuse a middleware that is not ``mw(spec, call_next) -> callable``."""
    name = getattr(mw, "__qualname__", repr(mw))
    if not callable(mw):
        raise ConfigError(f"middleware {name} is not callable")
    try:
        inspect.signature(mw).bind(object(), object())
    except TypeError:
        raise ConfigError(
            f"middleware {name} must take (spec, call_next) and return the wrapped callable"
        ) from None
    except ValueError:
        return


class App:
    """A set of stream handlers that one worker process runs.

    Example::

        from redrive import App, RetryPolicy

        app = App()                       # REDRIVE_REDIS_URL, else the embedded Redis

        @app.handler("ecommerce:orders", group="orders-service",
                     retry=RetryPolicy(max_retries=3))
        async def handle(msg):
            ...

    Run it with ``redrive worker mymodule:app`` or ``app.run()``.
    """

    def __init__(self, redis_url: str | None = None, *, data_dir: Path | None = None) -> None:
        self.redis_url = redis_url
        self.data_dir = data_dir
        self.specs: list[HandlerSpec] = []
        self.middleware: list[Middleware] = []
        self.startup: list[Hook] = []
        self.shutdown: list[Hook] = []

    def use(self, middleware: Middleware) -> Middleware:
        """Wrap every handler: ``middleware(spec, call_next)`` returns the new callable.

        The first middleware added is the outermost. Example (timing)::

            def timed(spec, call_next):
                async def call(msg):
                    started = time.perf_counter()
                    try:
                        return await call_next(msg)
                    finally:
                        print(spec.stream, time.perf_counter() - started)
                return call

            app.use(timed)
        """
        check_middleware(middleware)
        self.middleware.append(middleware)
        return middleware

    def on_startup(self, fn: Hook) -> Hook:
        """Register ``async def fn(ctx: AppContext)`` to run before consuming starts.

        Example::

            @app.on_startup
            async def connect(ctx):
                ledger.client = ctx.redis
        """
        self.startup.append(fn)
        return fn

    def on_shutdown(self, fn: Hook) -> Hook:
        """Register ``async def fn(ctx: AppContext)`` to run after every consumer stopped."""
        self.shutdown.append(fn)
        return fn

    def handler(
        self,
        stream: str,
        *,
        group: str,
        retry: RetryPolicy | None = None,
        retry_by_class: Mapping[ErrorClass, RetryPolicy] | None = None,
        rules: Rules | None = None,
        breaker: BreakerPolicy | None = _DEFAULT_BREAKER,
        concurrency: int = 16,
        prefetch: int = 100,
        max_deliveries: int = 5,
        visibility_timeout: float = 60.0,
        max_payload_bytes: int = MIB,
        dlq_maxlen: int | None = None,
        dlq_max_age: float | None = None,
        start_id: str = "0",
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Callable[[F], F]:
        """Register ``fn`` for ``stream`` read by consumer group ``group``.

        ``async def`` handlers run on the event loop; plain ``def`` handlers run in a
        thread pool of ``concurrency`` threads. Pass ``breaker=None`` to disable the
        circuit breaker. ``timeout`` is each run's time limit in seconds (default 300,
        ``None`` for none): a run still going then is cancelled and retried.
        """

        def register(fn: F) -> F:
            check_handler(fn)
            if any(s.stream == stream and s.group == group for s in self.specs):
                raise ConfigError(f"a handler for {stream!r} in group {group!r} already exists")
            self.specs.append(
                HandlerSpec(
                    stream=stream,
                    group=group,
                    fn=fn,
                    is_async=is_async_handler(fn),
                    retry=retry or RetryPolicy(),
                    retry_by_class=dict(retry_by_class or {}),
                    rules=rules or DEFAULT_RULES,
                    breaker=breaker,
                    concurrency=concurrency,
                    prefetch=prefetch,
                    max_deliveries=max_deliveries,
                    visibility_timeout=visibility_timeout,
                    max_payload_bytes=max_payload_bytes,
                    dlq_maxlen=dlq_maxlen,
                    dlq_max_age=dlq_max_age,
                    start_id=start_id,
                    timeout=timeout,
                )
            )
            return fn

        return register

    async def serve(
        self,
        *,
        options: WorkerOptions | None = None,
        stop: asyncio.Event | None = None,
        redis_url: str | None = None,
    ) -> None:
        """Run every handler until ``stop`` is set (or forever), then shut down gracefully."""
        from redrive.runtime.worker import Worker

        worker = Worker(self, options or WorkerOptions(), redis_url or self.redis_url)
        await worker.serve(stop or asyncio.Event())

    def run(self, *, options: WorkerOptions | None = None, redis_url: str | None = None) -> None:
        """Blocking: run until SIGTERM/SIGINT, then drain and exit."""
        from redrive.runtime.worker import run_forever

        run_forever(self, options or WorkerOptions(), redis_url or self.redis_url)
