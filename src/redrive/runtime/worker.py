"""A worker process: one consumer per handler, shared connections, signal handling."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from redrive.errors import ConfigError, StoreError
from redrive.runtime.buffer import ReadBudget
from redrive.runtime.consumer import Consumer, cancel
from redrive.runtime.context import AppContext, bound
from redrive.runtime.liveness import NameLease
from redrive.runtime.scheduler import Scheduler
from redrive.runtime.settings import WorkerOptions, otel_in_use
from redrive.runtime.supervise import keep_running
from redrive.store.connection import (
    async_client,
    describe_error,
    permission_hint,
    ping,
    redact_url,
    sync_client,
)
from redrive.store.embedded import default_data_dir, ensure_url
from redrive.store.scripts import scripts

if TYPE_CHECKING:
    from redrive.runtime.app import App

log = logging.getLogger("redrive.worker")

#: On a cluster: seconds a node may take to answer a command before it counts as down.
NODE_TIMEOUT = 2.0
#: Connections a worker process shares among its background work, beyond two per handler.
SHARED_CONNECTIONS = 8


class Worker:
    """Runs all handlers of an app in this process."""

    def __init__(self, app: App, options: WorkerOptions, redis_url: str | None) -> None:
        if not app.specs:
            raise ConfigError("the app has no handlers: decorate a function with @app.handler")
        self.app = app
        self.options = options
        self.redis_url = redis_url

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; every consumer then drains and flushes."""
        url = ensure_url(self.redis_url, self.app.data_dir or default_data_dir(), warn=True)
        # The socket timeout stays above BLOCK so a blocked read is never cut short; the
        # reader's connections carry no per-reply timeout, their round trips have a deadline.
        timeout = self.options.block_ms / 1000 + 10
        # Connections (docs/configuration.md, "Idle cost and connections"): each handler
        # pins one for its blocked read and one for its settlements; the scheduler,
        # reclaim, leases, stats and the name lease share SHARED_CONNECTIONS more (waiting
        # for one when all are busy); an idempotent handler pins one more for its claims.
        # Handlers and hooks have their own clients (below).
        specs = self.app.specs
        n = len(specs) + sum(spec.idempotency is not None for spec in specs)
        # On a cluster, a hung node must not hold the slot-map refresh that every stream's
        # commands wait for: redis-py's own commands there time out after NODE_TIMEOUT.
        client = async_client(
            url, socket_timeout=timeout, pool_size=n + SHARED_CONNECTIONS, node_timeout=NODE_TIMEOUT
        )
        reader = async_client(url, socket_timeout=None, pool_size=n + 2, node_timeout=NODE_TIMEOUT)
        # Handlers and hooks get clients of their own: the consumers' skip redis-py's reply
        # parsing of XREADGROUP/XAUTOCLAIM (use_raw_replies), which a user's call must not.
        # Their pools open no connection until one is used.
        ctx = AppContext(url, async_client(url), functools.partial(sync_client, url))
        lease = NameLease(client, self.options.consumer)
        keeper: asyncio.Task[None] | None = None
        try:
            # Built before any I/O: a middleware that returns no callable fails here.
            scheduler = Scheduler(interval=self.options.scheduler_interval)
            budget = ReadBudget(self.options.read_ahead_bytes)
            opts = self.options
            tracer = tracer_of(self.app.tracer_provider, opts)
            consumers = [
                Consumer(s, opts, client, reader, self.app.middleware, scheduler, n, budget, tracer)
                for s in self.app.specs
            ]
            await ping(client, url)
            # Once for every consumer, and before the name lease's first script call.
            await scripts().load_all(client)
            await lease.claim()
            keeper = asyncio.create_task(lease.keep(), name="consumer name lease")
            with bound(ctx):  # tasks started below inherit it: redrive.context()
                await self._consume(consumers, scheduler, ctx, stop)
        finally:
            if keeper is not None:
                keeper.cancel()
                await lease.release()
            await reader.aclose()
            await client.aclose()
            await ctx.aclose()

    async def _consume(
        self, consumers: list[Consumer], scheduler: Scheduler, ctx: AppContext,
        stop: asyncio.Event,
    ) -> None:  # fmt: skip
        """Start-up hooks, the consumers until ``stop``, then the shutdown hooks."""
        for hook in self.app.startup:
            await hook(ctx)
        log.info(
            "worker %s consuming %s from %s",
            self.options.consumer,
            ", ".join(f"{s.stream} ({s.group})" for s in self.app.specs),
            redact_url(ctx.url),
        )
        # One retry scheduler for every handler of the process (its idle cost does not grow
        # with their number); it ends after the consumers, which may still schedule.
        promoting = asyncio.create_task(
            keep_running(scheduler.loop, what="retry scheduler", stream="*"),
            name="retry scheduler",
        )
        try:
            await run_all(consumers, stop)
        except ResponseError as exc:
            # An ACL refusal is a set-up error: one line naming the missing permission.
            if permission_hint(exc) is None:
                raise
            raise StoreError(describe_error(exc, ctx.url)) from exc
        finally:
            await cancel([promoting])
            for hook in self.app.shutdown:
                await hook(ctx)


async def run_all(consumers: list[Consumer], stop: asyncio.Event) -> None:
    """Run every consumer until ``stop``; if one fails, stop the others gracefully and
    raise its error (instead of leaving them running with nobody awaiting them)."""
    inner = asyncio.Event()
    relay = asyncio.create_task(_relay(stop, inner))
    tasks = [asyncio.create_task(c.run(inner)) for c in consumers]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if not t.cancelled() and t.exception() is not None]
        if failed:
            inner.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise failed[0].exception()  # type: ignore[misc]
    finally:
        relay.cancel()
        for task in tasks:
            task.cancel()  # only matters when run_all itself is cancelled


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def run_forever(app: App, options: WorkerOptions, redis_url: str | None) -> None:
    """Blocking entry point: SIGTERM/SIGINT start a graceful shutdown."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Worker(app, options, redis_url).serve(stop)

    with asyncio.Runner(loop_factory=loop_factory(options.event_loop)) as runner:
        runner.run(main())


def tracer_of(provider: Any, options: WorkerOptions) -> Any:
    """The tracer the consumers record spans with, or ``None`` (decided once, at start):
    ``options.tracing`` off, ``opentelemetry-api`` not installed, or nothing records."""
    if not options.tracing or not otel_in_use(provider):
        return None
    try:
        from redrive.runtime.tracing import tracer_for
    except ImportError:  # the redrive[otel] extra is not installed
        return None
    return tracer_for(provider)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for ``name`` (``None``: asyncio's default)."""
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        raise ConfigError(
            "the uvloop event loop is not installed: pip install 'redrive[uvloop]', "
            "or run with the default loop (--loop asyncio)"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
