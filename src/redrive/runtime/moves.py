"""Failure outcomes: decide (pure core), then move the entry with one fenced Lua call.

A move that meets a transport error is retried with backoff; if Redis stays away the
entry is left pending under this consumer, where the own-pending re-read or another
consumer's reclaim finds it. Nothing is dropped on the floor.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace
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
from redrive.store.channel import TRANSPORT_ERRORS
from redrive.store.scripts import Arg, Script

if TYPE_CHECKING:
    from redrive.runtime.consumer import Consumer
    from redrive.runtime.source import Source

log = logging.getLogger("redrive.moves")

MOVE_ATTEMPTS = 8


def describe(exc: BaseException, *, consumer: str, duration: float, now_ms: int) -> Failure:
    """A :class:`Failure` record of ``exc``."""
    klass = type(exc)
    name = (
        klass.__qualname__
        if klass.__module__ == "builtins"
        else (f"{klass.__module__}.{klass.__qualname__}")
    )
    return Failure(
        error_type=name,
        error_class="",
        message=str(exc) or repr(exc),
        traceback="".join(traceback.format_exception(exc)),
        at_ms=now_ms,
        consumer=consumer,
        duration_ms=duration * 1000,
    )


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
    failure = describe(exc, consumer=c.name, duration=duration, now_ms=now_ms)
    failure = replace(failure, error_class=decision.error_class.value)
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
    result = await _call(c, c.scripts.schedule_retry, [source.key, c.keys.due], args)
    if result == 1:
        c.stats.retried += 1
        if d.next_attempt == msg.attempt:
            c.stats.breaker_parked += 1
        c.schedule_changed.set()
    _log(c, msg, "retry", result, error=failure, delay=d.delay, next_attempt=d.next_attempt)


async def dead_letter(
    c: Consumer, source: Source, msg: Message, failure: Failure, reason: str
) -> None:
    """Move ``msg`` to the dead-letter stream with ``reason`` (fenced)."""
    fields = dead_record(msg, failure, group=c.spec.group, reason=reason)
    # No MAXLEN here: dlq_maxlen is applied by the retention loop, which warns before it
    # evicts and keeps an audit; trimming on every write would drop dead letters silently.
    args: list[Arg] = [c.spec.group, c.name, msg.entry_id, source.delete, 0, *fields]
    result = await _call(c, c.scripts.dead_letter, [source.key, c.keys.dlq], args)
    code = result[0] if isinstance(result, list) else result
    if code == 1:
        c.stats.dead += 1
        c.stats.dead_by_reason[reason] += 1
    _log(c, msg, "dead", code, error=failure, reason=reason)


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


async def _call(c: Consumer, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    for attempt in range(MOVE_ATTEMPTS):
        try:
            return await script(c.client, keys, args)
        except TRANSPORT_ERRORS as exc:
            if attempt == MOVE_ATTEMPTS - 1:
                # The entry stays pending under this consumer; have the reader re-read
                # its own pending entries next, instead of waiting for a reclaim.
                c.need_own_pending = True
                log.error("%s failed (%s): entry left pending, re-read next", script.name, exc)
                return None
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
    return None


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
