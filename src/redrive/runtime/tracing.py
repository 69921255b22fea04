"""OpenTelemetry spans that follow one message through retries, dead letters and replays.

The only module that imports ``opentelemetry`` (the ``redrive[otel]`` extra needs only
``opentelemetry-api``). Others import it lazily and carry on without it, so redrive runs
where it is not installed. docs/monitoring.md#tracing shows the spans in a trace viewer.

- ``process {S}`` (CONSUMER), one per handler run. A first delivery is a child of the
  producer's context, extracted from the entry's fields through ``opentelemetry.propagate``
  (``OTEL_PROPAGATORS`` is honoured); a message without one starts a trace here. A retry,
  or a replayed message, starts a new trace **linked** to the creation context and to the
  previous attempt (or the replay's ``send`` span): a retry an hour later would otherwise
  stretch one trace over the hour, and tail sampling would decide before it ended.
- ``retry {S}`` and ``dead_letter {S}`` (CLIENT), children of the run: the settle, with
  the delay, the reason and the error fingerprint; ended when the move lands (a fenced
  move says so).
- ``replay {dlq}`` (INTERNAL), one per ``redrive dlq replay``, and a ``send {target}``
  (PRODUCER) per message, linked to the creation context and to its ``dead_letter`` span.

Copies keep the producer's fields (``traceparent`` among them) and carry redrive's own
context in ``redrive-traceparent`` / ``redrive-tracestate``, read only from keys redrive
writes (``retry:``, ``dlq:``): on a source stream a producer's ``redrive-*`` fields are
dropped before anything here sees them.

**Zero cost when off**: :func:`tracer_for` decides once, when a worker starts, whether
anything records (a provider passed to ``App``, else the global one; the API's no-op and
an unset global provider record nothing). When nothing does, no wrapper is installed and
no hook runs; a process that never imported ``opentelemetry`` does not import it either
(``settings.otel_in_use``). When one does, attributes are built only for spans that record
(``span.is_recording()``: a sampler may drop most).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from redrive.core import fields as f
from redrive.core.fingerprint import compute as fingerprint
from redrive.core.message import Message
from redrive.core.records import Failure

Context = otel_context.Context
Tracer = trace.Tracer
TracerProvider = trace.TracerProvider
Handler = Callable[[Message], Awaitable[Any]]

SYSTEM = "redis"
#: Re-delivery counts kept for runs to come (a bound: a dropped entry never runs here).
MAX_NOTED = 10_000
#: ``redrive.outcome`` of a run.
SUCCEEDED, RETRY_SCHEDULED, DEAD_LETTERED = "succeeded", "retry_scheduled", "dead_lettered"
#: ``redrive.link`` on a link: what the linked span is.
CREATION, PREVIOUS, DEAD_LETTER, REPLAY = "creation", "previous_attempt", "dead_letter", "replay"

# redrive's own context is always W3C: only redrive reads it, and `dlq show` parses it.
_W3C = TraceContextTextMapPropagator()
_EMPTY = Context()
#: The run whose handler failed, left open until the settler has decided (same task).
_FAILED_RUN: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "redrive_failed_run", default=None
)


def tracer_for(provider: TracerProvider | None) -> Tracer | None:
    """The tracer to record with, or ``None`` when nothing would record.

    ``provider`` is the one given to ``App`` (tests pass their own); ``None`` takes the
    global one *now*: set it (the SDK, or ``opentelemetry-instrument``) before the worker
    starts.
    """
    source = provider if provider is not None else trace.get_tracer_provider()
    from redrive import __version__

    tracer = source.get_tracer("redrive", __version__)
    # An unset global provider hands out proxies, the API alone (or OTEL_SDK_DISABLED) no-ops.
    if isinstance(tracer, trace.NoOpTracer | trace.ProxyTracer):
        return None
    return tracer


class _BytesGetter(Getter[Mapping[bytes, bytes]]):
    """Reads a propagator's fields from an entry's raw fields."""

    def get(self, carrier: Mapping[bytes, bytes], key: str) -> list[str] | None:
        value = carrier.get(key.encode())
        return None if value is None else [value.decode("utf-8", "replace")]

    def keys(self, carrier: Mapping[bytes, bytes]) -> list[str]:
        return [k.decode("utf-8", "replace") for k in carrier]


_BYTES = _BytesGetter()


def context_fields() -> dict[str, str]:
    """The current context as stream fields (through the global propagator; ``{}``
    without an active span), for :func:`redrive.publish` to add to every entry."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def creation_context(fields: Mapping[bytes, bytes]) -> Context:
    """The producer's context in an entry's fields (empty when it has none)."""
    return propagate.extract(fields, getter=_BYTES)


def own_context(meta: Mapping[str, str]) -> SpanContext:
    """redrive's own context on a copy (``redrive-traceparent``), from *trusted* metadata."""
    parent = meta.get(f.TRACEPARENT.meta)
    if not parent:
        return trace.INVALID_SPAN_CONTEXT
    carrier = {"traceparent": parent, "tracestate": meta.get(f.TRACESTATE.meta, "")}
    return trace.get_current_span(_W3C.extract(carrier)).get_span_context()


def own_fields(span: Span) -> list[str]:
    """``span``'s context as redrive's own fields, to append to a copy's field list."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, trace.set_span_in_context(span))
    out: list[str] = []
    if "traceparent" in carrier:
        out += [f.TRACEPARENT.name, carrier["traceparent"]]
    if carrier.get("tracestate"):
        out += [f.TRACESTATE.name, carrier["tracestate"]]
    return out


def links_of(fields: Mapping[bytes, bytes], meta: Mapping[str, str], previous: str) -> list[Link]:
    """Links to the creation context (the producer's fields) and to redrive's own context
    on a copy (trusted ``meta``); ``previous`` names what the latter is."""
    links: list[Link] = []
    origin = trace.get_current_span(creation_context(fields)).get_span_context()
    if origin.is_valid:
        links.append(Link(origin, {"redrive.link": CREATION}))
    own = own_context(meta)
    if own.is_valid:
        links.append(Link(own, {"redrive.link": previous}))
    return links


class ConsumerTracing:
    """The spans of one consumer (one handler): built by the consumer when tracing is on."""

    __slots__ = ("child_of_producer", "consumer", "deliveries", "group", "stream", "tracer")

    def __init__(
        self, tracer: Tracer, *, stream: str, group: str, consumer: str, child_of_producer: bool
    ) -> None:
        self.tracer = tracer
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.child_of_producer = child_of_producer
        #: (key, entry id) -> delivery count of re-delivered entries (recovery notes them).
        self.deliveries: dict[tuple[str, str], int] = {}

    def redelivered(self, key: str, entry_id: bytes, count: int) -> None:
        """Recovery re-delivers ``entry_id`` of ``key``: its Redis delivery count."""
        if len(self.deliveries) >= MAX_NOTED:  # entries dropped unrun are never popped
            self.deliveries.clear()
        self.deliveries[(key, entry_id.decode())] = count

    def parent(self, msg: Message) -> tuple[Context, list[Link]]:
        """Where a span about ``msg`` hangs: the producer's span (a first delivery), or
        a new trace with links (a retry, a replay, or ``child_of_producer=False``)."""
        if msg.key == self.stream and self.child_of_producer:
            return creation_context(msg.fields), []
        meta = msg.meta
        replayed = msg.attempt == 1 and f.REPLAYED_MS.meta in meta
        return _EMPTY, links_of(msg.fields, meta, REPLAY if replayed else PREVIOUS)

    def start_run(self, msg: Message) -> Span:
        """The ``process {S}`` span of one run (not made current)."""
        ctx, links = self.parent(msg)
        span = self.tracer.start_span(
            f"process {self.stream}", context=ctx, kind=SpanKind.CONSUMER, links=links
        )
        if span.is_recording():
            # Few attributes: the SDK validates each one, a cost paid per message.
            attrs: dict[str, Any] = {
                "messaging.system": SYSTEM,
                "messaging.destination.name": self.stream,
                "messaging.consumer.group.name": self.group,
                "messaging.operation.type": "process",
                "messaging.message.id": msg.id,
                "redrive.attempt": msg.attempt,
                "redrive.delivery_count": self.deliveries.pop((msg.key, msg.entry_id), 1),
            }
            if msg.entry_id != msg.id:  # a retry or a replay: where this copy was read
                attrs["redrive.key"] = msg.key
                attrs["redrive.entry_id"] = msg.entry_id
            span.set_attributes(attrs)
        elif self.deliveries:
            self.deliveries.pop((msg.key, msg.entry_id), None)
        return span

    def wrap(self, call: Handler) -> Handler:
        """``call`` (the handler with its middleware) run inside its ``process`` span.

        A success ends the span; a failure leaves it open for :meth:`settling`, which the
        lane reaches next in the same task, so the outcome lands on the run's span.
        """
        start_run = self.start_run
        attach, detach = otel_context.attach, otel_context.detach
        in_context = trace.set_span_in_context

        async def traced(msg: Message) -> Any:
            stale = _FAILED_RUN.get()
            if stale is not None:  # a run cancelled at shutdown was never settled
                _FAILED_RUN.set(None)
                stale.end()
            span = start_run(msg)
            token = attach(in_context(span))
            try:
                result = await call(msg)
            except BaseException as exc:
                if span.is_recording():
                    span.set_status(Status(StatusCode.ERROR, _text(exc)))
                    span.set_attribute("error.type", _type_name(exc))
                _FAILED_RUN.set(span)
                raise
            finally:
                detach(token)
            if span.is_recording():
                span.set_attribute("redrive.outcome", SUCCEEDED)
            span.end()
            return result

        return traced

    def wants_traceback(self) -> bool:
        """Whether the failed run records (then its retry's fingerprint needs the frames)."""
        run = _FAILED_RUN.get()
        return run is not None and run.is_recording()

    def settling(
        self, msg: Message, kind: str, failure: Failure, *, destination: str, reason: str,
        delay_ms: int | None = None,
    ) -> Settle:  # fmt: skip
        """Start the ``retry`` / ``dead_letter`` span of a move; end the failed run's span.

        ``kind`` is ``"retry"`` or ``"dead_letter"``. A dead letter with no run before it
        (a crash loop, a trimmed entry, a payload too large) hangs where its run would.
        """
        run = _FAILED_RUN.get()
        _FAILED_RUN.set(None)
        links: list[Link] = []
        if run is not None:
            ctx = trace.set_span_in_context(run)
        else:
            ctx, links = self.parent(msg)
        dead = kind == "dead_letter"
        span = self.tracer.start_span(
            f"{kind} {self.stream}", context=ctx, kind=SpanKind.CLIENT, links=links
        )
        if span.is_recording():
            attrs: dict[str, Any] = {
                "messaging.system": SYSTEM,
                "messaging.destination.name": destination,
                "messaging.consumer.group.name": self.group,
                "messaging.client.id": self.consumer,
                "messaging.operation.type": "send",
                "messaging.operation.name": kind,
                "messaging.message.id": msg.id,
                "redrive.attempt": msg.attempt,
                "redrive.reason": reason,
                "redrive.error.type": failure.error_type,
                "redrive.error_class": failure.error_class,
                "redrive.fingerprint": fingerprint(
                    failure.error_type, failure.message, failure.traceback
                ),
            }
            if delay_ms is not None:
                attrs["redrive.delay_ms"] = delay_ms
            span.set_attributes(attrs)
        if run is not None:
            if run.is_recording():
                run.set_attribute("redrive.outcome", DEAD_LETTERED if dead else RETRY_SCHEDULED)
                # The settled failure's type: a time limit's cancellation is HandlerTimeout.
                run.set_attribute("error.type", failure.error_type)
            run.end()
        # A retry names the attempt it continues from; a dead letter its own span.
        return Settle(span, own_fields(span if dead or run is None else run))


class Settle:
    """A move's span: the fields that carry it, and its end when the move lands."""

    __slots__ = ("fields", "span")

    def __init__(self, span: Span, fields: list[str]) -> None:
        self.span = span
        self.fields = fields

    def landed(self, outcome: str) -> None:
        """The move's reply: ``moved``, ``fenced`` or ``stale`` (someone else settled it)."""
        span = self.span
        if span.is_recording():
            span.set_attribute("redrive.fence", outcome)
            if outcome != "moved":
                span.set_status(Status(StatusCode.ERROR, f"not moved: {outcome}"))
                span.set_attribute("error.type", outcome)
        span.end()


class ReplayTracing:
    """The spans of one replay operation: ``replay {dlq}`` and a ``send`` per message."""

    __slots__ = ("span", "tracer")

    @classmethod
    def start(
        cls, provider: TracerProvider | None, dlqs: Sequence[str], op: str
    ) -> ReplayTracing | None:
        """The replay's spans, or ``None`` when nothing records (see :func:`tracer_for`)."""
        tracer = tracer_for(provider)
        return None if tracer is None else cls(tracer, dlqs, op)

    def __init__(self, tracer: Tracer, dlqs: Sequence[str], op: str) -> None:
        self.tracer = tracer
        name = f"replay {dlqs[0]}" if len(dlqs) == 1 else "replay"
        self.span = tracer.start_span(name, kind=SpanKind.INTERNAL)
        if self.span.is_recording():
            self.span.set_attributes({
                "messaging.system": SYSTEM, "messaging.operation.name": "replay",
                "redrive.dlq": list(dlqs), "redrive.replay.op": op,
            })  # fmt: skip

    def send(
        self, fields: Mapping[bytes, bytes], meta: Mapping[str, str], *, target: str,
        message_id: str, dlq_id: str,
    ) -> Span:  # fmt: skip
        """The ``send`` span of one dead letter (its producer ``fields``, its trusted
        ``meta``), linked to the creation context and to its ``dead_letter`` span."""
        span = self.tracer.start_span(
            f"send {target}",
            context=trace.set_span_in_context(self.span),
            kind=SpanKind.PRODUCER,
            links=links_of(fields, meta, DEAD_LETTER),
        )
        if span.is_recording():
            span.set_attributes({
                "messaging.system": SYSTEM, "messaging.destination.name": target,
                "messaging.operation.type": "send", "messaging.operation.name": "send",
                "messaging.message.id": message_id, "redrive.dlq_id": dlq_id,
            })  # fmt: skip
        return span

    def sent(self, span: Span, target_id: str | None) -> None:
        """End a ``send`` span: the new id, or ``None`` (someone else moved the entry)."""
        if span.is_recording():
            if target_id is None:
                span.set_attribute("redrive.gone", True)
            else:
                span.set_attribute("redrive.target_id", target_id)
        span.end()

    def finish(self, moved: int, stopped: str) -> None:
        """End the ``replay`` span with what it did."""
        if self.span.is_recording():
            self.span.set_attribute("redrive.replay.moved", moved)
            if stopped:
                self.span.set_attribute("redrive.replay.stopped", stopped)
        self.span.end()


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:200]
    except Exception:  # a broken __str__ must not replace the handler's error
        return type(exc).__name__


def _type_name(exc: BaseException) -> str:
    klass = type(exc)
    if klass.__module__ == "builtins":
        return klass.__qualname__
    return f"{klass.__module__}.{klass.__qualname__}"


__all__ = [
    "ConsumerTracing",
    "ReplayTracing",
    "Settle",
    "context_fields",
    "creation_context",
    "links_of",
    "own_context",
    "own_fields",
    "tracer_for",
]
