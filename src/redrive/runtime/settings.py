"""Settings of a handler and of a worker process (frozen, validated values)."""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from redrive.core.breaker import BreakerPolicy
from redrive.core.classify import DEFAULT_RULES, ErrorClass, Rules
from redrive.core.idempotency import Idempotency, check_ttl, retry_horizon
from redrive.core.message import Message
from redrive.core.retry import RetryPolicy
from redrive.errors import ConfigError
from redrive.store.keys import validate_group_name, validate_stream_name

#: What middleware wraps and returns: ``async def call(msg) -> result``.
AsyncHandler = Callable[[Message], Awaitable[Any]]
SyncHandler = Callable[[Message], Any]
#: A handler: ``async def handle(msg)`` (on the event loop) or ``def handle(msg)`` (in
#: the thread pool).
Handler = AsyncHandler | SyncHandler
#: Wraps a handler: ``mw(spec, call_next) -> call``. Middleware always sees an async
#: callable (a ``def`` handler is adapted to run in the thread pool first).
Middleware = Callable[["HandlerSpec", AsyncHandler], AsyncHandler]

MIB = 1024 * 1024
EVENT_LOOPS = ("asyncio", "uvloop")
#: A worker process's read-ahead budget (bytes), over all its handlers.
DEFAULT_READ_AHEAD = 64 * MIB
#: A handler run's default time limit (seconds), as arq's job timeout.
DEFAULT_TIMEOUT = 300.0
#: Where XGROUP CREATE may start a group: ``$``, or a stream id (``0``, ``<ms>``, ``<ms>-<seq>``).
_START_ID = re.compile(r"\$|[0-9]{1,20}(?:-[0-9]{1,20})?")
_UINT64_MAX = 2**64 - 1


class HandlerOptions(TypedDict, total=False):
    """The keyword options of ``@app.handler``; each one's default is :class:`HandlerSpec`'s.

    Typed so that IDEs and ``mypy --strict`` check ``@app.handler(..., prefetch="10")``
    while the defaults live in one place.
    """

    retry: RetryPolicy
    retry_by_class: Mapping[ErrorClass, RetryPolicy]
    rules: Rules
    breaker: BreakerPolicy | None
    concurrency: int
    prefetch: int
    max_deliveries: int
    visibility_timeout: float
    max_payload_bytes: int
    dlq_maxlen: int | None
    dlq_max_age: float | None
    start_id: str
    timeout: float | None
    idempotency: Idempotency | None


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
    dead-lettered with reason ``handler_timeout``). ``idempotency`` runs the handler at
    most once with effect per key (:class:`~redrive.core.idempotency.Idempotency`,
    docs/concepts.md#exactly-once-effects).
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
    idempotency: Idempotency | None = None

    def __post_init__(self) -> None:
        validate_stream_name(self.stream)
        validate_group_name(self.group)
        _check_policies(self)
        for name in ("concurrency", "prefetch", "max_deliveries", "max_payload_bytes"):
            _positive_int(name, getattr(self, name))
        if self.dlq_maxlen is not None:
            _positive_int("dlq_maxlen", self.dlq_maxlen)
        if self.dlq_max_age is not None and not _finite_positive(self.dlq_max_age):
            raise ConfigError(f"dlq_max_age={self.dlq_max_age!r}: use a number of seconds > 0")
        if self.timeout is not None and not _finite_positive(self.timeout):
            raise ConfigError(f"timeout={self.timeout!r}: use a number of seconds > 0, or None")
        if not _finite_positive(self.visibility_timeout):
            raise ConfigError(
                f"visibility_timeout={self.visibility_timeout!r}: use a number of seconds > 0"
            )
        check_start_id(self.start_id)
        _check_idempotency(self)


def _check_idempotency(spec: HandlerSpec) -> None:
    idem = spec.idempotency
    if idem is None:
        return
    if not isinstance(idem, Idempotency):
        raise ConfigError(f"idempotency={idem!r}: use idempotency=Idempotency(...)")
    horizon = retry_horizon([spec.retry, *spec.retry_by_class.values()])
    check_ttl(idem, horizon, spec.dlq_max_age)


def _check_policies(spec: HandlerSpec) -> None:
    """The policy objects are of their types (``retry=3`` is a mistake for ``RetryPolicy(…)``)."""
    if not isinstance(spec.retry, RetryPolicy):
        hint = f"RetryPolicy(max_retries={spec.retry})" if _is_int(spec.retry) else "RetryPolicy()"
        raise ConfigError(f"retry={spec.retry!r}: use retry={hint}")
    if not isinstance(spec.rules, Rules):
        raise ConfigError(f"rules={spec.rules!r}: use rules=Rules(permanent=(...), ...)")
    if spec.breaker is not None and not isinstance(spec.breaker, BreakerPolicy):
        raise ConfigError(f"breaker={spec.breaker!r}: use BreakerPolicy(...), or None to disable")
    if not isinstance(spec.retry_by_class, Mapping):
        raise ConfigError(
            f"retry_by_class={spec.retry_by_class!r}: use a dict such as "
            "{ErrorClass.TRANSIENT: RetryPolicy(max_retries=10)}"
        )
    for klass, policy in spec.retry_by_class.items():
        if not isinstance(klass, ErrorClass) or not isinstance(policy, RetryPolicy):
            raise ConfigError(
                f"retry_by_class entry {klass!r}: {policy!r}: map an ErrorClass "
                "(TRANSIENT, PERMANENT, PROCESSING) to a RetryPolicy"
            )
    # A copy: a dict the caller changes later must not change a registered handler.
    object.__setattr__(spec, "retry_by_class", dict(spec.retry_by_class))


def check_start_id(start_id: object) -> None:
    """Refuse a group start that XGROUP CREATE would refuse, before any I/O."""
    valid = isinstance(start_id, str) and _START_ID.fullmatch(start_id) is not None
    if valid and start_id != "$":
        valid = all(int(part) <= _UINT64_MAX for part in str(start_id).split("-"))
    if not valid:
        raise ConfigError(
            f"start_id={start_id!r}: use '0' (the whole backlog), '$' (only entries "
            "added from now on) or a stream id '<ms>' / '<ms>-<seq>'"
        )


def otel_in_use(provider: object = None) -> bool:
    """Whether OpenTelemetry may be recording here, decided without importing it (its
    import costs start-up): a provider was given, the process has imported the API (a
    span or a global provider needs that; redis-py 8 imports it whenever it is
    installed), or ``OTEL_PYTHON_TRACER_PROVIDER`` names a provider for it to load."""
    return (
        provider is not None
        or "opentelemetry.trace" in sys.modules
        or bool(os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"))
    )


def default_consumer_name() -> str:
    """``<host>-<pid>``: unique per process, recognisable in XINFO CONSUMERS."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Settings of one worker process (shared by all its handlers).

    ``block_ms`` is the XREADGROUP BLOCK; the socket timeout is kept above it.
    ``reclaim_interval`` defaults to a quarter of each handler's visibility timeout.
    ``read_ahead_bytes`` bounds the bytes of entries read and not yet finished, over all
    handlers of the process (``None``: only each handler's count bounds it); a message
    larger than it still runs.
    """

    consumer: str = field(default_factory=default_consumer_name)
    block_ms: int = 1000
    shutdown_timeout: float = 30.0
    reclaim_interval: float | None = None
    scheduler_interval: float = 1.0
    stats_interval: float = 1.0
    ack_linger: float = 0.002
    read_ahead_bytes: int | None = DEFAULT_READ_AHEAD
    #: The event loop of ``App.run`` / ``redrive worker``: ``asyncio`` or ``uvloop``
    #: (``pip install 'redrive[uvloop]'``).
    event_loop: str = "asyncio"
    #: Histograms and the per-second metrics stream (docs/monitoring.md); counters are kept
    #: whatever it says.
    metrics: bool = True
    #: OpenTelemetry spans (docs/monitoring.md, "Tracing"), when a tracer provider
    #: records: the one given to ``App(tracer_provider=…)``, else the global one.
    #: ``False``: none.
    tracing: bool = True
    #: A first delivery's ``process`` span is a child of the producer's span; ``False``:
    #: a new trace linked to it (as retries always are).
    trace_child_of_producer: bool = True

    def __post_init__(self) -> None:
        if (
            not isinstance(self.consumer, str)
            or not self.consumer
            or any(c.isspace() for c in self.consumer)
        ):
            raise ConfigError(f"consumer name {self.consumer!r}: use a non-empty name, no spaces")
        _positive_int("block_ms", self.block_ms)
        if self.read_ahead_bytes is not None:
            _positive_int("read_ahead_bytes", self.read_ahead_bytes)
        if self.event_loop not in EVENT_LOOPS:
            raise ConfigError(
                f"event_loop={self.event_loop!r}: use one of {', '.join(EVENT_LOOPS)}"
            )
        for name in ("shutdown_timeout", "scheduler_interval", "stats_interval", "ack_linger"):
            if not _finite_positive(getattr(self, name)):
                raise ConfigError(f"{name}={getattr(self, name)!r}: use a number > 0")
        if self.reclaim_interval is not None and not _finite_positive(self.reclaim_interval):
            raise ConfigError(
                f"reclaim_interval={self.reclaim_interval!r}: use a number of seconds > 0, "
                "or None (a quarter of each handler's visibility timeout)"
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_positive(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 < value < float("inf")


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r}: use an integer >= 1")
