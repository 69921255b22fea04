"""``running``: an app served in the test's own event loop, against a real Redis.

``async with running(app, redis_url) as run`` starts ``app.serve(stop=…)`` as a task,
returns once it has started (every handler's group exists on its source and retry
streams and this worker's consumer is registered in it), and on the way out sets
``stop`` and waits for the graceful shutdown (in-flight work finished, acks flushed).
An error of the app (a failed start, an ACL refusal) is raised in the test, not lost in
a background task.

Example::

    async with running(app, redis_url) as run:
        await aredis.xadd("orders", {"data": '{"id": 1}'})
        await run.until_idle(timeout=5.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio
from redis.exceptions import ResponseError

from redrive.errors import RedriveError
from redrive.runtime.settings import WorkerOptions
from redrive.store.connection import async_client
from redrive.store.keys import StreamKeys
from redrive.testing.idle import POLL_SECONDS, until_idle

if TYPE_CHECKING:
    from redrive.runtime.app import App

T = TypeVar("T")
#: Beyond the worker's own shutdown timeout: the final flush and closing connections.
STOP_GRACE = 5.0


class NotStarted(RedriveError, TimeoutError):
    """``running`` gave up waiting for the app to start; the message says what is missing."""


class AppStopped(RedriveError):
    """The app stopped on its own (its error is the ``__cause__``) while a test waited."""


def options_for_tests(**overrides: Any) -> WorkerOptions:
    """Worker options for tests: a fresh consumer name (two apps in one process never
    share one), a short BLOCK and shutdown timeout so a test stops in well under a second.

    Example::

        options = options_for_tests(shutdown_timeout=1.0)
        async with running(app, redis_url, options=options):
            ...
    """
    quick = WorkerOptions(
        consumer=f"test-{secrets.token_hex(4)}", block_ms=100, shutdown_timeout=5.0
    )
    return replace(quick, **overrides)


@dataclass(slots=True)
class RunningApp:
    """The handle ``running`` yields: the app's task, its options, ``until_idle``."""

    app: App
    redis_url: str
    options: WorkerOptions
    task: asyncio.Task[None]
    stop_event: asyncio.Event

    @property
    def consumer(self) -> str:
        """This worker's consumer name in every group."""
        return self.options.consumer

    async def until_idle(self, *, timeout: float = 10.0, wait_scheduled: bool = True) -> None:
        """:func:`redrive.testing.until_idle` for this app; raises :class:`AppStopped`
        at once if the app dies meanwhile instead of waiting for the timeout."""
        await self.guard(
            until_idle(self.app, self.redis_url, timeout=timeout, wait_scheduled=wait_scheduled)
        )

    async def guard(self, waiting: Awaitable[T]) -> T:
        """Await ``waiting`` unless the app stops first (then raise :class:`AppStopped`)."""
        future = asyncio.ensure_future(waiting)
        await asyncio.wait({future, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if future.done():
            return future.result()
        future.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await future
        raise AppStopped(f"the app stopped while the test waited: {self.task!r}") from (
            self.task.exception() if not self.task.cancelled() else None
        )

    async def stop(self) -> None:
        """Set ``stop`` and wait for the graceful shutdown; re-raise the app's error."""
        self.stop_event.set()
        await asyncio.wait_for(self.task, self.options.shutdown_timeout + STOP_GRACE)


@contextlib.asynccontextmanager
async def running(
    app: App,
    redis_url: str,
    *,
    options: WorkerOptions | None = None,
    start_timeout: float = 10.0,
) -> AsyncIterator[RunningApp]:
    """Serve ``app`` on ``redis_url`` for the ``async with`` block (see the module).

    ``options`` defaults to :func:`options_for_tests`. Raises :class:`NotStarted` if the app
    has not started within ``start_timeout`` seconds, or the app's own error if it failed.
    """
    options = options or options_for_tests()
    stop = asyncio.Event()
    task = asyncio.create_task(
        app.serve(options=options, stop=stop, redis_url=redis_url), name="redrive app"
    )
    run = RunningApp(app, redis_url, options, task, stop)
    try:
        await run.guard(_wait_started(run, start_timeout))
    except AppStopped as exc:
        raise (exc.__cause__ or exc) from None  # the app's own error says more
    except BaseException:
        await _cancel(run)
        raise
    try:
        yield run
    finally:
        if not task.done():
            await run.stop()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


async def _wait_started(run: RunningApp, timeout: float) -> None:
    client = async_client(run.redis_url)
    deadline = time.monotonic() + timeout
    try:
        while (missing := await _not_started(client, run)) is not None:
            if time.monotonic() >= deadline:
                raise NotStarted(f"the app did not start within {timeout:g}s: {missing}")
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await client.aclose()


async def _not_started(client: redis.asyncio.Redis, run: RunningApp) -> str | None:
    """What is missing for the app to count as started, or ``None``."""
    if not run.app.specs:
        return "the app has no handlers"  # serve() refuses it: its error ends the wait
    for spec in run.app.specs:
        keys = StreamKeys.of(spec.stream, spec.group)
        for key in (keys.stream, keys.retry):
            try:
                consumers = await client.xinfo_consumers(key, spec.group)
            except ResponseError as exc:
                if str(exc).startswith("NOPERM"):  # the URL's user may not run XINFO
                    return f"XINFO CONSUMERS {key} refused ({exc}): use a URL that may"
                return f"no group {spec.group} on {key}"
            names = {_text(row.get("name")) for row in consumers}
            if run.consumer not in names:
                return f"consumer {run.consumer} not registered in {spec.group} on {key}"
    return None


async def _cancel(run: RunningApp) -> None:
    run.stop_event.set()
    run.task.cancel()
    with contextlib.suppress(BaseException):
        await run.task


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
