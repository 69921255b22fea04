"""What happens to a message after its handler ran (pure).

``decide_failure`` turns an exception plus the message's attempt count into one of:
retry after a delay, or dead-letter with a reason. Success is always an ack.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from redrive.core.breaker import Verdict
from redrive.core.classify import DEFAULT_RULES, ErrorClass, Rules
from redrive.core.retry import RetryPolicy, UniformSource
from redrive.errors import DecodeError, HandlerTimeout, Retry

#: Dead-letter reasons (docs/concepts.md#fields); stable strings stored in ``redrive-reason``.
POISON = "poison"
PERMANENT_ERROR = "permanent_error"
MAX_RETRIES_EXCEEDED = "max_retries_exceeded"
MAX_DELIVERIES_EXCEEDED = "max_deliveries_exceeded"
MAX_AGE_EXCEEDED = "max_age_exceeded"
PAYLOAD_TOO_LARGE = "payload_too_large"
PAYLOAD_TRIMMED = "payload_trimmed"
HANDLER_TIMEOUT = "handler_timeout"
REASONS = (
    POISON,
    PERMANENT_ERROR,
    MAX_RETRIES_EXCEEDED,
    MAX_DELIVERIES_EXCEEDED,
    MAX_AGE_EXCEEDED,
    PAYLOAD_TOO_LARGE,
    PAYLOAD_TRIMMED,
    HANDLER_TIMEOUT,
)


class Action(StrEnum):
    """The outcome of one delivery."""

    ACK = "ack"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision about one failed delivery.

    ``next_attempt`` is the attempt number the retry will carry; when the circuit breaker
    is open a transient failure is re-queued without consuming an attempt.
    """

    action: Action
    error_class: ErrorClass
    reason: str | None = None
    delay: float = 0.0
    next_attempt: int = 0


def verdict_of(exc: BaseException, klass: ErrorClass, rules: Rules = DEFAULT_RULES) -> Verdict:
    """What a failure says to the circuit breaker (see :mod:`redrive.core.breaker`)."""
    if isinstance(exc, Retry):
        return Verdict.NEUTRAL  # the handler's own choice, not evidence about anything
    if klass is ErrorClass.TRANSIENT:
        return Verdict.DEPENDENCY
    if klass is ErrorClass.PERMANENT and not rules.is_bad_input(exc):
        return Verdict.HANDLER
    return Verdict.ANSWERED


def decide_failure(
    exc: BaseException,
    *,
    attempt: int,
    policy: RetryPolicy,
    rng: UniformSource,
    now_ms: int,
    first_seen_ms: int,
    rules: Rules = DEFAULT_RULES,
    by_class: dict[ErrorClass, RetryPolicy] | None = None,
    previous_delay: float | None = None,
    breaker_wait: float | None = None,
    klass: ErrorClass | None = None,
) -> Decision:
    """Decide what to do with a delivery whose handler raised ``exc``.

    ``attempt`` is 1 for the first delivery; ``breaker_wait`` is the seconds until the
    handler's open circuit breaker probes again (``None`` when it is closed).

    While the breaker is not closed, a failure that may be the dependency's or the
    deploy's fault (transient, or permanent but not bad input) is *parked*: re-scheduled
    for the next probe without using an attempt, so an outage or a bad deploy never
    empties the stream into the DLQ. Bad input still goes to the DLQ at once.
    ``retry_by_class`` (``by_class``) may hold a policy for ``PERMANENT``: such failures
    (other than bad input) are then retried by it instead of dead-lettered. ``klass`` is
    ``rules.classify(exc)`` when the caller has it already (classified once per failure).
    """
    if klass is None:
        klass = rules.classify(exc)
    if isinstance(exc, DecodeError):
        return Decision(Action.DEAD, klass, reason=exc.reason)
    bad_input = klass is ErrorClass.PERMANENT and rules.is_bad_input(exc)
    chosen = (by_class or {}).get(klass)
    permanent = klass is ErrorClass.PERMANENT and chosen is None
    if bad_input or (permanent and breaker_wait is None):
        return Decision(Action.DEAD, klass, reason=_permanent_reason(exc))
    age_limit = (chosen or policy).max_age
    if age_limit is not None and now_ms - first_seen_ms > age_limit * 1000:
        return Decision(Action.DEAD, klass, reason=MAX_AGE_EXCEEDED)
    if breaker_wait is not None and klass is not ErrorClass.PROCESSING:
        wait = max(breaker_wait, _requested_delay(exc) or 0.0)
        return Decision(Action.RETRY, klass, delay=wait, next_attempt=attempt)
    chosen = chosen or policy
    if attempt - 1 >= chosen.max_retries:
        reason = HANDLER_TIMEOUT if isinstance(exc, HandlerTimeout) else MAX_RETRIES_EXCEEDED
        return Decision(Action.DEAD, klass, reason=reason)
    delay = _requested_delay(exc)
    if delay is None:
        delay = chosen.delay(attempt - 1, rng, previous_delay)
    return Decision(Action.RETRY, klass, delay=delay, next_attempt=attempt + 1)


def _requested_delay(exc: BaseException) -> float | None:
    return exc.delay if isinstance(exc, Retry) else None


def _permanent_reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError | ValueError) and type(exc).__name__ in (
        "JSONDecodeError",
        "UnicodeDecodeError",
    ):
        return POISON
    return PERMANENT_ERROR
