"""The settler: a failed run's outcome, decided (pure core) and moved with one fenced call.

The call is queued with the ack batcher (``acks.Move``) and goes out with the next round
trip, beside the acks; one whose reply is lost is sent again. Until it lands the entry
stays pending under this consumer, so a crash re-delivers it. Nothing is dropped on the
floor. The settler owns the failure side of the counters and the failure log lines.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from random import Random
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from redrive.core.breaker import CircuitBreaker
from redrive.core.decision import (
    MAX_DELIVERIES_EXCEEDED,
    PAYLOAD_TRIMMED,
    Action,
    Decision,
    decide_failure,
    verdict_of,
)
from redrive.core.fields import DELAY_MS, IDEMPOTENCY_DONE, IDEMPOTENCY_KEY, REPLAYED_MS
from redrive.core.ids import stream_id_ms
from redrive.core.message import Message
from redrive.core.records import Failure, dead_record, retry_record
from redrive.errors import ConfigError
from redrive.runtime.acks import AckBatcher, Move
from redrive.runtime.settings import HandlerSpec
from redrive.runtime.source import Source
from redrive.runtime.stats import Stats
from redrive.store import calls
from redrive.store.calls import Call, DeadLetterResult, Fence
from redrive.store.keys import StreamKeys, idempotency_done

if TYPE_CHECKING:
    from redrive.runtime.tracing import ConsumerTracing

log = logging.getLogger("redrive.moves")


def describe(
    exc: BaseException,
    *,
    consumer: str,
    duration: float,
    now_ms: int,
    error_class: str = "",
    with_traceback: bool = True,
) -> Failure:
    """A :class:`Failure` record of ``exc``.

    Only dead letters keep a traceback (retry records do not), and formatting one costs
    more than the rest of a failure's handling: a retry skips it (``with_traceback``).
    """
    klass = type(exc)
    name = (
        klass.__qualname__
        if klass.__module__ == "builtins"
        else (f"{klass.__module__}.{klass.__qualname__}")
    )
    return Failure(
        error_type=name,
        error_class=error_class,
        message=str(exc) or repr(exc),
        traceback=traceback_text(exc) if with_traceback else "",
        at_ms=now_ms,
        consumer=consumer,
        duration_ms=duration * 1000,
    )


_TRACEBACKS: dict[tuple[Any, ...], str] = {}
_TRACEBACKS_MAX = 256


def traceback_text(exc: BaseException) -> str:
    """``exc``'s formatted traceback, cached by where it was raised and what it says.

    A failing subset raises the same error at the same place thousands of times, and
    formatting a traceback (Python 3.11 compiles each line for its carets) costs more than
    the rest of a dead letter; a chained exception is formatted afresh.
    """
    if exc.__cause__ is not None or exc.__context__ is not None:
        return "".join(traceback.format_exception(exc))
    where = []
    tb = exc.__traceback__
    while tb is not None:
        where.append((tb.tb_frame.f_code, tb.tb_lineno))
        tb = tb.tb_next
    try:
        key = (type(exc), str(exc), tuple(where))
        text = _TRACEBACKS.get(key)
    except Exception:  # a str() that fails or an unhashable part: no caching
        return "".join(traceback.format_exception(exc))
    if text is None:
        text = "".join(traceback.format_exception(exc))
        if len(_TRACEBACKS) >= _TRACEBACKS_MAX:
            _TRACEBACKS.clear()
        _TRACEBACKS[key] = text
    return text


class Settler:
    """Turns a failed run into a retry or a dead letter (queued with the ack batcher).

    ``on_scheduled(due_ms)`` tells the retry scheduler a retry now waits until ``due_ms``.
    """

    def __init__(
        self,
        *,
        spec: HandlerSpec,
        consumer: str,
        keys: StreamKeys,
        batcher: AckBatcher,
        stats: Stats,
        breaker: CircuitBreaker | None,
        client: Redis,
        rng: Random,
        on_scheduled: Callable[[int], None],
        tracing: ConsumerTracing | None = None,
    ) -> None:
        self.spec = spec
        self.consumer = consumer
        self.keys = keys
        self.batcher = batcher
        self.stats = stats
        self.breaker = breaker
        self.client = client
        self.rng = rng
        self.on_scheduled = on_scheduled
        self.by_class = dict(spec.retry_by_class)
        self.tracing = tracing  # None: tracing is off (runtime/tracing.py)

    def failed(self, source: Source, msg: Message, exc: Exception, duration: float) -> None:
        """Retry or dead-letter ``msg`` after its handler raised ``exc``."""
        stats = self.stats
        if stats.timings is not None:
            stats.timings.duration.observe(duration)
        now_ms = int(time.time() * 1000)
        mono = time.monotonic()
        breaker = self.breaker
        rules = self.spec.rules
        klass = rules.classify(exc)
        if breaker is not None:
            # Recorded before deciding, so the failure that opens the breaker is parked too.
            breaker.record(verdict_of(exc, klass, rules), fresh=not source.trusted, now=mono)
        previous = msg.meta.get(DELAY_MS.meta)
        decision = decide_failure(
            exc,
            attempt=msg.attempt,
            policy=self.spec.retry,
            rng=self.rng,
            now_ms=now_ms,
            first_seen_ms=_first_seen(msg),
            rules=rules,
            by_class=self.by_class,
            previous_delay=int(previous) / 1000 if previous and previous.isdigit() else None,
            breaker_wait=breaker.wait(mono) if breaker is not None else None,
            klass=klass,
        )
        stats.failed += 1
        stats.failed_by_class[decision.error_class.value] += 1
        failure = describe(
            exc,
            consumer=self.consumer,
            duration=duration,
            now_ms=now_ms,
            error_class=decision.error_class.value,
            with_traceback=decision.action is not Action.RETRY
            or (self.tracing is not None and self.tracing.wants_traceback()),
        )
        if decision.action is Action.RETRY:
            self._schedule(source, msg, failure, decision, now_ms)
        else:
            self.dead_letter(source, msg, failure, decision.reason or "permanent_error")

    def _schedule(
        self, source: Source, msg: Message, failure: Failure, d: Decision, now_ms: int
    ) -> None:
        delay_ms = int(d.delay * 1000)
        due_ms = now_ms + delay_ms
        group = self.spec.group
        fields = retry_record(
            msg, failure, group=group, next_attempt=d.next_attempt, due_ms=due_ms,
            delay_ms=delay_ms,
        )  # fmt: skip
        # A retry without delay goes straight to the retry stream: no schedule, no promotion.
        at_once = delay_ms <= 0
        settle = None
        if self.tracing is not None:
            settle = self.tracing.settling(
                msg, "retry", failure, destination=self.keys.retry if at_once else self.keys.due,
                reason=d.error_class.value, delay_ms=delay_ms,
            )  # fmt: skip
            fields += settle.fields
        call = calls.schedule_retry(
            stream=source.key, due=self.keys.due, group=group, consumer=self.consumer,
            entry_id=msg.entry_id, due_ms=due_ms, delete=source.trusted, fields=fields,
            retry=self.keys.retry if at_once else None,
        )  # fmt: skip

        def done(fence: Fence) -> None:
            if fence is Fence.MOVED:
                self.stats.retried += 1
                if d.next_attempt == msg.attempt:
                    self.stats.breaker_parked += 1
                if not at_once:
                    self.on_scheduled(due_ms)
            if settle is not None:
                settle.landed(_OUTCOMES[fence])
            self._log(msg, "retry", fence, failure, delay=d.delay, next_attempt=d.next_attempt)

        self._send(call, source, msg.entry_id, done)

    def dead_letter(self, source: Source, msg: Message, failure: Failure, reason: str) -> None:
        """Move ``msg`` to the dead-letter stream with ``reason`` (fenced)."""
        fields = dead_record(msg, failure, group=self.spec.group, reason=reason)
        settle = None
        if self.tracing is not None:
            settle = self.tracing.settling(
                msg, "dead_letter", failure, destination=self.keys.dlq, reason=reason
            )
            fields += settle.fields  # the dead letter's own trace and span ids
        if self.spec.idempotency is not None:
            fields += self._idempotency_key(msg)
        # No MAXLEN here: dlq_maxlen is applied by the retention loop, which warns before it
        # evicts and keeps an audit; trimming on every write would drop dead letters silently.
        call = calls.dead_letter(
            stream=source.key, dlq=self.keys.dlq, group=self.spec.group, consumer=self.consumer,
            entry_id=msg.entry_id, delete=source.trusted, fields=fields,
        )  # fmt: skip

        def done(result: DeadLetterResult) -> None:
            if result.fence is Fence.MOVED:
                self.stats.dead += 1
                self.stats.dead_by_reason[reason] += 1
            if settle is not None:
                settle.landed(_OUTCOMES[result.fence])
            self._log(msg, "dead", result.fence, failure, reason=reason)

        self._send(call, source, msg.entry_id, done)

    def exceeded(
        self, source: Source, entry_id: bytes, fields: list[bytes], deliveries: int
    ) -> None:
        """Dead-letter an entry delivered ``deliveries`` times without an outcome."""
        failure = self._failure(
            "MaxDeliveriesExceeded", "crash",
            f"delivered {deliveries} times without an outcome "
            f"(max_deliveries={self.spec.max_deliveries}); the handler may crash the worker",
        )  # fmt: skip
        self.dead_letter(source, source.message(entry_id, fields), failure, MAX_DELIVERIES_EXCEEDED)

    def trimmed(self, source: Source, entry_id: bytes) -> None:
        """Record an owned pending entry whose payload was deleted or trimmed: a loss."""
        self.stats.trimmed += 1
        failure = self._failure(
            "PayloadTrimmed", "lost",
            "the entry was deleted or trimmed from the stream before it was processed",
        )  # fmt: skip
        self.dead_letter(source, source.message(entry_id, []), failure, PAYLOAD_TRIMMED)

    async def lost(self, source: Source, entry_id: bytes) -> None:
        """Record a pending id whose entry Redis reports deleted (XAUTOCLAIM, Redis >= 7).

        Redis already dropped it from the pending list, so there is nothing to move: the
        dead-letter stream gets a tombstone so the loss is visible and counted.
        """
        self.stats.trimmed += 1
        msg = source.message(entry_id, [])
        failure = self._failure(
            "PayloadTrimmed", "lost",
            "the entry was deleted or trimmed while pending; its payload is gone",
        )  # fmt: skip
        fields = dead_record(msg, failure, group=self.spec.group, reason=PAYLOAD_TRIMMED)
        it = iter(fields)
        await self.client.xadd(self.keys.dlq, dict(zip(it, it, strict=False)))
        # Counted like the tombstone of ``trimmed`` (which goes through ``dead_letter``).
        self.stats.dead += 1
        self.stats.dead_by_reason[PAYLOAD_TRIMMED] += 1
        log.error("%s %s was trimmed while pending: recorded as lost", source.key, entry_id)

    def _idempotency_key(self, msg: Message) -> list[str]:
        """The ``redrive-idempotency-key`` field of ``msg``'s dead letter (none if its key
        cannot be made): a replay then sees whether a duplicate has succeeded since."""
        assert self.spec.idempotency is not None
        try:
            key = self.spec.idempotency.key_of(msg)
        except ConfigError:
            return []
        done = idempotency_done(self.spec.stream, self.spec.group)
        return [IDEMPOTENCY_KEY.name, key, IDEMPOTENCY_DONE.name, done]

    def _failure(self, error_type: str, error_class: str, message: str) -> Failure:
        return Failure(
            error_type=error_type,
            error_class=error_class,
            message=message,
            traceback="",
            at_ms=int(time.time() * 1000),
            consumer=self.consumer,
            duration_ms=0.0,
        )

    def _send(
        self, call: Call[Any], source: Source, entry_id: str, done: Callable[[Any], None]
    ) -> None:
        self.batcher.send(Move(call, source, entry_id.encode(), done))

    def _log(
        self, msg: Message, decision: str, fence: Fence, failure: Failure, **info: Any
    ) -> None:
        if fence is Fence.FENCED:
            self.stats.fenced += 1
        _log(msg, decision, fence, failure, info)


def _first_seen(msg: Message) -> int:
    # A replay from the DLQ starts a fresh life: max_age counts from the replay.
    replayed = msg.meta.get(REPLAYED_MS.meta)
    if replayed and replayed.isdigit():
        return int(replayed)
    try:
        return stream_id_ms(msg.id)
    except ValueError:
        return int(time.time() * 1000)


_UNSETTLED = {Fence.FENCED: "fenced", Fence.NOT_PENDING: "stale"}
_OUTCOMES = {Fence.MOVED: "moved", **_UNSETTLED}


def _log(msg: Message, decision: str, fence: Fence, failure: Failure, info: dict[str, Any]) -> None:
    if fence is Fence.MOVED and not log.isEnabledFor(logging.INFO):
        return  # the common case: skip building the record's extra fields
    extra = {
        "stream": msg.stream,
        "id": msg.id,
        "attempt": msg.attempt,
        "decision": decision if fence is Fence.MOVED else _UNSETTLED[fence],
        "error_type": failure.error_type,
        "error_class": failure.error_class,
        **info,
    }
    if fence is Fence.FENCED:
        log.warning("fence: %s %s now belongs to another consumer", msg.stream, msg.id, extra=extra)
    elif fence is Fence.MOVED:
        log.info(
            "%s %s attempt %d: %s (%s)",
            msg.stream,
            msg.id,
            msg.attempt,
            decision,
            failure.message[:200],
            extra=extra,
        )
    else:
        log.debug("%s %s was already settled", msg.stream, msg.id, extra=extra)
