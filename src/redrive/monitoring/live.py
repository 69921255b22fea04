"""Running monitors: a client with one-line errors, the live loop, the demo's dashboard.

The live loop outlives Redis: while reads fail it shows "Redis unreachable since
HH:MM:SS, retrying" with the reason and the last good frame, and resumes by itself.

Example::

    with monitor_client(url) as client:
        watch(client, Console(), HealthConfig(), interval=1.0, url=url)   # until Ctrl-C
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from types import TracebackType

import redis
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from redrive.errors import StoreError
from redrive.monitoring.collector import collect
from redrive.monitoring.dashboard import render
from redrive.monitoring.health import evaluate
from redrive.monitoring.model import Snapshot
from redrive.monitoring.thresholds import HealthConfig
from redrive.store.connection import describe_error, sync_client

REFRESH_SECONDS = 1.0
#: What a failed read of Redis raises (the cluster client's own errors are not RedisError).
STORE_FAILURES = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)


@contextlib.contextmanager
def monitor_client(url: str, *, timeout: float = 10.0) -> Iterator[redis.Redis]:
    """A sync client; any Redis or socket error inside becomes a one-line StoreError.

    The connect timeout is short (3 s at most): a monitor waiting on a dead host should
    say so soon, not hang a scrape or a frame.
    """
    client = sync_client(url, socket_timeout=timeout, socket_connect_timeout=min(timeout, 3.0))
    try:
        yield client
    except STORE_FAILURES as exc:
        raise StoreError(describe_error(exc, url)) from exc
    finally:
        client.close()


def take(
    client: redis.Redis, config: HealthConfig, streams: Sequence[str] | None = None
) -> Snapshot:
    """A snapshot with the window and dead-consumer threshold of ``config``."""
    return collect(
        client,
        streams or None,
        window=config.window_seconds,
        dead_after=config.dead_after_seconds,
    )


def frame(
    client: redis.Redis, config: HealthConfig, streams: Sequence[str] | None = None
) -> RenderableType:
    """One dashboard frame, judged by ``config``."""
    snapshot = take(client, config, streams)
    return render(snapshot, evaluate(snapshot, config))


def watch(
    client: redis.Redis,
    console: Console,
    config: HealthConfig,
    *,
    streams: Sequence[str] | None = None,
    interval: float = REFRESH_SECONDS,
    url: str = "",
    stop: threading.Event | None = None,
) -> None:
    """Redraw the dashboard every ``interval`` seconds until Ctrl-C (or ``stop`` is set),
    through outages."""
    view = Outage(url)
    stop = stop or threading.Event()
    with (
        Live(Text("connecting…"), console=console, auto_refresh=False) as live,
        contextlib.suppress(KeyboardInterrupt),
    ):
        while not stop.is_set():
            try:
                shown = view.up(frame(client, config, streams))
            except STORE_FAILURES as exc:
                shown = view.down(exc)
            live.update(shown, refresh=True)
            stop.wait(interval)


class Outage:
    """What the live monitor shows: the frame, or since when Redis fails and the last frame."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.since: float | None = None
        self.last: RenderableType | None = None

    def up(self, current: RenderableType) -> RenderableType:
        """Redis answered: show (and remember) the fresh frame."""
        self.since, self.last = None, current
        return current

    def down(self, exc: BaseException) -> RenderableType:
        """A read failed: the banner, the reason, and the last good frame (if any)."""
        if self.since is None:
            self.since = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(self.since))
        banner = Text(f"Redis unreachable since {stamp}, retrying", "bold red")
        reason = Text(describe_error(exc, self.url), "red")
        if self.last is None:
            return Group(banner, reason)
        return Group(banner, reason, Text("last frame before the outage:", "dim"), self.last)


class DemoDashboard:
    """A :class:`redrive.demo.DemoObserver` that shows the live dashboard during the demo.

    ``progress`` is called about every 0.1 s; the dashboard is collected at most once per
    ``interval`` (a few pipelined reads), with the demo's phase and settle counts on top.
    """

    def __init__(self, console: Console, url: str, streams: Sequence[str], *,
                 interval: float = REFRESH_SECONDS) -> None:  # fmt: skip
        self.console = console
        self.client = sync_client(url, socket_timeout=10.0)
        self.streams = list(streams)
        self.config = HealthConfig()
        self.interval = interval
        self.current = "starting"
        self.settled = ""
        self.last = 0.0
        self.live = Live(Text(""), console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> DemoDashboard:
        self.live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            self._draw()  # the last frame stays on screen above the report
        self.live.__exit__(kind, exc, tb)
        self.client.close()

    def phase(self, text: str) -> None:
        """Show the step that begins."""
        self.current = text
        self.last = 0.0  # redraw at the next progress call

    def progress(self, streams: Sequence[object], elapsed: float) -> None:
        """Redraw at most once per interval (``streams``: the demo's StreamProgress list)."""
        self.settled = "  ".join(
            f"{getattr(s, 'stream', '?')} {getattr(s, 'settled', 0)}/{getattr(s, 'produced', 0)}"
            for s in streams
        )
        if time.monotonic() - self.last >= self.interval:
            self._draw()

    def _draw(self) -> None:
        self.last = time.monotonic()
        head = Text.assemble(("demo: ", "bold"), self.current, "  ", (self.settled, "dim"))
        self.live.update(Group(head, frame(self.client, self.config, self.streams)), refresh=True)
