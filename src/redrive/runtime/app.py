"""``App``: the registry of handlers and the entry point of a worker.

Everything an app is given is checked when it is given (``App(url)``, ``@app.handler``,
``app.use``, ``@app.on_startup``), before any I/O, with a message that says what to write.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from redrive.core.message import Message
from redrive.errors import ConfigError
from redrive.runtime.context import AppContext, Hook
from redrive.runtime.settings import HandlerOptions, HandlerSpec, Middleware, WorkerOptions
from redrive.store.connection import validate_url

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.12+

H = TypeVar("H", bound=Callable[[Message], Any])
HookT = TypeVar("HookT", bound=Hook)

__all__ = [
    "App",
    "AppContext",
    "Hook",
    "check_handler",
    "check_hook",
    "check_middleware",
    "check_option_names",
]


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


def check_option_names(options: Mapping[str, object]) -> None:
    """Refuse an unknown ``@app.handler`` keyword, naming the closest known one."""
    known = sorted(HandlerOptions.__optional_keys__)
    for name in options:
        if name not in HandlerOptions.__optional_keys__:
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"@app.handler has no option {name!r}: {hint}(options: {', '.join(known)})"
            )


def check_hook(fn: object, kind: str) -> None:
    """Refuse a start-up or shutdown hook that is not ``async def hook(ctx)``."""
    name = getattr(fn, "__qualname__", repr(fn))
    short = getattr(fn, "__name__", kind)
    if not callable(fn):
        raise ConfigError(f"{kind} hook {name} is not callable: decorate `async def f(ctx)`")
    if not is_async_handler(fn):
        raise ConfigError(
            f"{kind} hook {name} must be a coroutine function, `async def {short}(ctx)`: the "
            "worker awaits it on its event loop (a plain def would block the loop)"
        )
    try:
        inspect.signature(fn).bind(object())
    except TypeError:
        raise ConfigError(
            f"{kind} hook {name} must take one argument, the AppContext: `async def {short}(ctx)`"
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

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        data_dir: Path | None = None,
        tracer_provider: Any = None,
    ) -> None:
        """``redis_url``: ``redis://…``, ``rediss://…``, ``redis+cluster://…`` (several seed
        nodes: ``redis+cluster://h1:7000,h2:7001``) or ``unix://…`` (checked now, connected
        when served); ``None``: ``REDRIVE_REDIS_URL``, else the embedded Redis under
        ``data_dir``. ``tracer_provider``: an OpenTelemetry ``TracerProvider`` for the
        spans of every handler (``pip install 'redrive[otel]'``; docs/monitoring.md,
        "Tracing"); ``None``: the global provider as set when the worker starts."""
        if tracer_provider is not None and not callable(
            getattr(tracer_provider, "get_tracer", None)
        ):
            raise ConfigError(
                f"tracer_provider={tracer_provider!r}: pass an OpenTelemetry TracerProvider "
                "(opentelemetry.sdk.trace.TracerProvider()), or None for the global one"
            )
        self.tracer_provider = tracer_provider
        self.redis_url = None if redis_url is None else validate_url(redis_url)
        if data_dir is not None and not isinstance(data_dir, str | Path):
            raise ConfigError(f"data_dir={data_dir!r}: use a directory path")
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.specs: list[HandlerSpec] = []
        self.middleware: list[Middleware] = []
        self.startup: list[Hook] = []
        self.shutdown: list[Hook] = []

    def use(self, middleware: Middleware) -> Middleware:
        """Wrap every handler: ``middleware(spec, call_next)`` returns the new callable.

        The first middleware added is the outermost; it is called once per handler when
        the worker starts. Example (timing)::

            def timed(spec: HandlerSpec, call_next: AsyncHandler) -> AsyncHandler:
                async def call(msg: Message) -> Any:
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

    def on_startup(self, fn: HookT) -> HookT:
        """Register ``async def fn(ctx: AppContext)`` to run before consuming starts.

        A hook that raises stops the worker before it reads anything. Example::

            @app.on_startup
            async def warm(ctx):
                await ctx.redis.set("prices:loaded", 1)
        """
        check_hook(fn, "startup")
        self.startup.append(fn)
        return fn

    def on_shutdown(self, fn: HookT) -> HookT:
        """Register ``async def fn(ctx: AppContext)`` to run after every consumer stopped."""
        check_hook(fn, "shutdown")
        self.shutdown.append(fn)
        return fn

    def handler(
        self, stream: str, *, group: str, **options: Unpack[HandlerOptions]
    ) -> Callable[[H], H]:
        """Register ``fn`` for ``stream`` read by consumer group ``group``.

        ``async def`` handlers run on the event loop; plain ``def`` handlers run in a
        thread pool of ``concurrency`` threads. The options and their defaults are those
        of :class:`~redrive.runtime.settings.HandlerSpec` (``docs/configuration.md``);
        they are checked here, so a mistake fails at import, not in the worker::

            @app.handler("ecommerce:orders", group="billing",
                         retry=RetryPolicy(max_retries=5), timeout=30, breaker=None)
            async def handle(msg: Message) -> None: ...
        """

        check_option_names(options)

        def register(fn: H) -> H:
            check_handler(fn)
            spec = HandlerSpec(
                stream=stream, group=group, fn=fn, is_async=is_async_handler(fn), **options
            )
            if any(s.stream == stream and s.group == group for s in self.specs):
                raise ConfigError(f"a handler for {stream!r} in group {group!r} already exists")
            self.specs.append(spec)
            return fn

        return register

    async def serve(
        self,
        *,
        options: WorkerOptions | None = None,
        stop: asyncio.Event | None = None,
        redis_url: str | None = None,
    ) -> None:
        """Run every handler until ``stop`` is set (or forever), then shut down gracefully.

        ``redis_url`` overrides the app's. Example (in a test or an embedding service)::

            stop = asyncio.Event()
            task = asyncio.create_task(app.serve(stop=stop))
            ...
            stop.set()
            await task          # in-flight runs finished, acks flushed, hooks run
        """
        from redrive.runtime.worker import Worker

        url = self.redis_url if redis_url is None else validate_url(redis_url)
        worker = Worker(self, options or WorkerOptions(), url)
        await worker.serve(stop or asyncio.Event())

    def run(self, *, options: WorkerOptions | None = None, redis_url: str | None = None) -> None:
        """Blocking: run until SIGTERM/SIGINT, then drain and exit."""
        from redrive.runtime.worker import run_forever

        url = self.redis_url if redis_url is None else validate_url(redis_url)
        run_forever(self, options or WorkerOptions(), url)
