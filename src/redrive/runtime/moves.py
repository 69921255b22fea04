"""Failure outcomes: decide (pure core), then move the entry with one fenced Lua call.

The call is queued (``acks.Move``) and goes out with the next round trip, beside the
acks; one whose reply is lost is sent again. Until it lands the entry stays pending
under this consumer, so a crash re-delivers it. Nothing is dropped on the floor.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redrive.core.codec import stream_id_ms
from redrive.core.decision import (
    MAX_DELIVERIES_EXCEEDED,
    PAYLOAD_TRIMMED,
    Action,
    Decision,
    decide_failure,
    verdict_of,
)
from redrive.core.message import Message
from redrive.core.records import Failure, dead_record, retry_record
from redrive.runtime import acks
from redrive.store.scripts import Arg, Script

if TYPE_CHECKING:
    from redrive.runtime.consumer import Consumer
    from redrive.runtime.source import Source

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


async def failed(
    c: Consumer, source: Source, msg: Message, exc: Exception, duration: float
) -> None:
    """Retry or dead-letter ``msg`` after its handler raised ``exc``."""
    if c.stats.timings is not None:
        c.stats.timings.duration.observe(duration)
    now_ms = int(time.time() * 1000)
    mono = time.monotonic()
    breaker = c.breaker
    rules = c.spec.rules
    if breaker is not None:
        # Recorded before deciding, so the failure that opens the breaker is parked too.
        verdict = verdict_of(exc, rules.classify(exc), rules)
        breaker.record(verdict, fresh=not source.trusted, now=mono)
    previous = msg.meta.get("delay-ms")
    decision = decide_failure(
        exc,
        attempt=msg.attempt,
        policy=c.spec.retry,
        rng=c.rng,
        now_ms=now_ms,
        first_seen_ms=_first_seen(msg),
        rules=rules,
        by_class=dict(c.spec.retry_by_class),
        previous_delay=int(previous) / 1000 if previous and previous.isdigit() else None,
        breaker_wait=breaker.wait(mono) if breaker is not None else None,
    )
    c.stats.failed += 1
    c.stats.failed_by_class[decision.error_class.value] += 1
    failure = describe(
        exc,
        consumer=c.name,
        duration=duration,
        now_ms=now_ms,
        error_class=decision.error_class.value,
        with_traceback=decision.action is not Action.RETRY,
    )
    if decision.action is Action.RETRY:
        await _schedule(c, source, msg, failure, decision, now_ms)
    else:
        await dead_letter(c, source, msg, failure, decision.reason or "permanent_error")


async def _schedule(
    c: Consumer, source: Source, msg: Message, failure: Failure, d: Decision, now_ms: int
) -> None:
    delay_ms = int(d.delay * 1000)
    due_ms = now_ms + delay_ms
    fields = retry_record(
        msg,
        failure,
        group=c.spec.group,
        next_attempt=d.next_attempt,
        due_ms=due_ms,
        delay_ms=delay_ms,
    )
    args: list[Arg] = [c.spec.group, c.name, msg.entry_id, due_ms, source.delete, *fields]

    def done(result: Any) -> None:
        if result == 1:
            c.stats.retried += 1
            if d.next_attempt == msg.attempt:
                c.stats.breaker_parked += 1
            if not c.promote_at_ms or due_ms < c.promote_at_ms:  # else it wakes in time
                c.schedule_changed.set()
        _log(c, msg, "retry", result, error=failure, delay=d.delay, next_attempt=d.next_attempt)

    _send(c, c.scripts.schedule_retry, [source.key, c.keys.due], args, source, msg.entry_id, done)


async def dead_letter(
    c: Consumer, source: Source, msg: Message, failure: Failure, reason: str
) -> None:
    """Move ``msg`` to the dead-letter stream with ``reason`` (fenced)."""
    fields = dead_record(msg, failure, group=c.spec.group, reason=reason)
    # No MAXLEN here: dlq_maxlen is applied by the retention loop, which warns before it
    # evicts and keeps an audit; trimming on every write would drop dead letters silently.
    args: list[Arg] = [c.spec.group, c.name, msg.entry_id, source.delete, *fields]

    def done(result: Any) -> None:
        code = result[0] if isinstance(result, list) else result
        if code == 1:
            c.stats.dead += 1
            c.stats.dead_by_reason[reason] += 1
        _log(c, msg, "dead", code, error=failure, reason=reason)

    _send(c, c.scripts.dead_letter, [source.key, c.keys.dlq], args, source, msg.entry_id, done)


async def exceeded(
    c: Consumer, source: Source, entry_id: bytes, fields: list[bytes], deliveries: int
) -> None:
    """Dead-letter an entry delivered ``deliveries`` times without an outcome."""
    msg = source.message(entry_id, fields)
    failure = Failure(
        error_type="MaxDeliveriesExceeded",
        error_class="crash",
        message=f"delivered {deliveries} times without an outcome "
        f"(max_deliveries={c.spec.max_deliveries}); the handler may crash the worker",
        traceback="",
        at_ms=int(time.time() * 1000),
        consumer=c.name,
        duration_ms=0.0,
    )
    await dead_letter(c, source, msg, failure, MAX_DELIVERIES_EXCEEDED)


async def trimmed(c: Consumer, source: Source, entry_id: bytes) -> None:
    """Record an owned pending entry whose payload was deleted or trimmed: a loss to report."""
    c.stats.trimmed += 1
    msg = source.message(entry_id, [])
    failure = Failure(
        error_type="PayloadTrimmed",
        error_class="lost",
        message="the entry was deleted or trimmed from the stream before it was processed",
        traceback="",
        at_ms=int(time.time() * 1000),
        consumer=c.name,
        duration_ms=0.0,
    )
    await dead_letter(c, source, msg, failure, PAYLOAD_TRIMMED)


def _send(
    c: Consumer,
    script: Script,
    keys: Sequence[str],
    args: Sequence[Arg],
    source: Source,
    entry_id: str,
    done: Callable[[Any], None],
) -> None:
    """Queue a fenced move for the next round trip (the reader's or the flush loop's).

    Until it is sent the entry stays pending under this consumer: a crash re-delivers it,
    a reconnect does not run it again (``acks.settling``), a lost reply sends it again.
    """
    c.outbox.append(acks.Move(script, keys, args, source, entry_id.encode(), done))
    acks.wanted(c)


def _first_seen(msg: Message) -> int:
    # A replay from the DLQ starts a fresh life: max_age counts from the replay.
    replayed = msg.meta.get("replayed-ms")
    if replayed and replayed.isdigit():
        return int(replayed)
    try:
        return stream_id_ms(msg.id)
    except ValueError:
        return int(time.time() * 1000)


def _log(c: Consumer, msg: Message, decision: str, code: Any, **info: Any) -> None:
    if code == 1 and not log.isEnabledFor(logging.INFO):
        return  # the common case: skip building the record's extra fields
    failure: Failure = info.pop("error")
    extra = {
        "stream": msg.stream,
        "id": msg.id,
        "attempt": msg.attempt,
        "decision": decision if code == 1 else ("fenced" if code == -1 else "stale"),
        "error_type": failure.error_type,
        "error_class": failure.error_class,
        **info,
    }
    if code == -1:
        c.stats.fenced += 1
        log.warning("fence: %s %s now belongs to another consumer", msg.stream, msg.id, extra=extra)
    elif code == 1:
        log.info(
            "%s %s attempt %d: %s (%s)",
            msg.stream,
            msg.id,
            msg.attempt,
            decision,
            failure.message[:200],
            extra=extra,
        )
    elif code is not None:
        log.debug("%s %s was already settled", msg.stream, msg.id, extra=extra)


async def lost(c: Consumer, source: Source, entry_id: bytes) -> None:
    """Record a pending id whose entry Redis reports deleted (XAUTOCLAIM, Redis >= 7).

    Redis already dropped it from the pending list, so there is nothing to move: the
    dead-letter stream gets a tombstone so the loss is visible and counted.
    """
    c.stats.trimmed += 1
    msg = source.message(entry_id, [])
    failure = Failure(
        error_type="PayloadTrimmed",
        error_class="lost",
        message="the entry was deleted or trimmed while pending; its payload is gone",
        traceback="",
        at_ms=int(time.time() * 1000),
        consumer=c.name,
        duration_ms=0.0,
    )
    fields = dead_record(msg, failure, group=c.spec.group, reason=PAYLOAD_TRIMMED)
    it = iter(fields)
    await c.client.xadd(c.keys.dlq, dict(zip(it, it, strict=False)))
    # Counted like the tombstone of ``trimmed`` (which goes through ``dead_letter``).
    c.stats.dead += 1
    c.stats.dead_by_reason[PAYLOAD_TRIMMED] += 1
    log.error("%s %s was trimmed while pending: recorded as lost", source.key, entry_id)
