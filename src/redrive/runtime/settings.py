"""Settings of a handler and of a worker process (frozen, validated values)."""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redrive.core.breaker import BreakerPolicy
from redrive.core.classify import DEFAULT_RULES, ErrorClass, Rules
from redrive.core.message import Message
from redrive.core.retry import RetryPolicy
from redrive.errors import ConfigError
from redrive.store.keys import validate_group_name, validate_stream_name

AsyncHandler = Callable[[Message], Awaitable[Any]]
SyncHandler = Callable[[Message], Any]
Handler = AsyncHandler | SyncHandler
#: Wraps a handler: ``mw(spec, call_next) -> call``. Middleware always sees an async
#: callable (a ``def`` handler is adapted to run in the thread pool first).
Middleware = Callable[["HandlerSpec", AsyncHandler], AsyncHandler]

MIB = 1024 * 1024
#: A handler run's default time limit (seconds), as arq's job timeout.
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One handler: which stream and group it consumes and how failures are treated.

    ``concurrency`` bounds the messages handled at once; ``prefetch`` is how many more may
    be read ahead. ``visibility_timeout`` (seconds) is how long an entry may stay
    unacknowledged before other consumers reclaim it; long handlers renew their lease.
    ``max_deliveries`` dead-letters an entry delivered that often without an outcome (a
    crash loop). ``start_id`` is where a new group starts (``0``: the whole backlog).
    ``dlq_maxlen`` / ``dlq_max_age`` (seconds) bound the dead-letter stream; workers
    trim it in the background and warn before entries age out (``redrive.store.retention``).
    ``timeout`` (seconds, ``None`` for none) is a run's time limit: a handler still running
    then is cancelled and the run fails with ``HandlerTimeout`` (transient: retried, then
    dead-lettered with reason ``handler_timeout``).
    """

    stream: str
    group: str
    fn: Handler
    is_async: bool
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_by_class: Mapping[ErrorClass, RetryPolicy] = field(default_factory=dict)
    rules: Rules = DEFAULT_RULES
    breaker: BreakerPolicy | None = field(default_factory=BreakerPolicy)
    concurrency: int = 16
    prefetch: int = 100
    max_deliveries: int = 5
    visibility_timeout: float = 60.0
    max_payload_bytes: int = MIB
    dlq_maxlen: int | None = None
    dlq_max_age: float | None = None
    start_id: str = "0"
    timeout: float | None = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        validate_stream_name(self.stream)
        validate_group_name(self.group)
        _positive_int("concurrency", self.concurrency)
        _positive_int("prefetch", self.prefetch)
        _positive_int("max_deliveries", self.max_deliveries)
        _positive_int("max_payload_bytes", self.max_payload_bytes)
        if self.dlq_maxlen is not None:
            _positive_int("dlq_maxlen", self.dlq_maxlen)
        if self.dlq_max_age is not None and not 0 < self.dlq_max_age < float("inf"):
            raise ConfigError(f"dlq_max_age={self.dlq_max_age!r}: use a number of seconds > 0")
        if self.timeout is not None and not (
            isinstance(self.timeout, int | float) and 0 < self.timeout < float("inf")
        ):
            raise ConfigError(f"timeout={self.timeout!r}: use a number of seconds > 0, or None")
        if not self.visibility_timeout > 0:
            raise ConfigError(
                f"visibility_timeout={self.visibility_timeout!r}: use a number of seconds > 0"
            )
        for klass, policy in self.retry_by_class.items():
            if not isinstance(klass, ErrorClass) or not isinstance(policy, RetryPolicy):
                raise ConfigError("retry_by_class maps ErrorClass to RetryPolicy")


def default_consumer_name() -> str:
    """``<host>-<pid>``: unique per process, recognisable in XINFO CONSUMERS."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Settings of one worker process (shared by all its handlers).

    ``block_ms`` is the XREADGROUP BLOCK; the socket timeout is kept above it.
    ``reclaim_interval`` defaults to a quarter of each handler's visibility timeout.
    """

    consumer: str = field(default_factory=default_consumer_name)
    block_ms: int = 1000
    shutdown_timeout: float = 30.0
    reclaim_interval: float | None = None
    scheduler_interval: float = 0.1
    stats_interval: float = 1.0
    ack_linger: float = 0.002
    #: Histograms and the per-second metrics stream (issue 5); counters are always kept.
    metrics: bool = True

    def __post_init__(self) -> None:
        if not self.consumer or any(c.isspace() for c in self.consumer):
            raise ConfigError(f"consumer name {self.consumer!r}: use a non-empty name, no spaces")
        _positive_int("block_ms", self.block_ms)
        for name in ("shutdown_timeout", "scheduler_interval", "stats_interval", "ack_linger"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)!r}: use a number > 0")


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}={value!r}: use an integer >= 1")
