"""What happens to a message after its handler ran (pure).

``decide_failure`` turns an exception plus the message's attempt count into one of:
retry after a delay, or dead-letter with a reason. Success is always an ack.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from redrive.core.classify import DEFAULT_RULES, ErrorClass, Rules
from redrive.core.retry import RetryPolicy, UniformSource
from redrive.errors import DecodeError, Retry

#: Dead-letter reasons (DESIGN §3); stable strings stored in ``redrive-reason``.
POISON = "poison"
PERMANENT_ERROR = "permanent_error"
MAX_RETRIES_EXCEEDED = "max_retries_exceeded"
MAX_DELIVERIES_EXCEEDED = "max_deliveries_exceeded"
MAX_AGE_EXCEEDED = "max_age_exceeded"
PAYLOAD_TOO_LARGE = "payload_too_large"
PAYLOAD_TRIMMED = "payload_trimmed"
REASONS = (
    POISON,
    PERMANENT_ERROR,
    MAX_RETRIES_EXCEEDED,
    MAX_DELIVERIES_EXCEEDED,
    MAX_AGE_EXCEEDED,
    PAYLOAD_TOO_LARGE,
    PAYLOAD_TRIMMED,
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
) -> Decision:
    """Decide what to do with a delivery whose handler raised ``exc``.

    ``attempt`` is 1 for the first delivery; ``breaker_wait`` is the seconds until the
    handler's open circuit breaker probes again (``None`` when it is closed).
    """
    klass = rules.classify(exc)
    if isinstance(exc, DecodeError):
        return Decision(Action.DEAD, klass, reason=exc.reason)
    if klass is ErrorClass.PERMANENT:
        return Decision(Action.DEAD, klass, reason=_permanent_reason(exc))
    chosen = (by_class or {}).get(klass, policy)
    if chosen.max_age is not None and now_ms - first_seen_ms > chosen.max_age * 1000:
        return Decision(Action.DEAD, klass, reason=MAX_AGE_EXCEEDED)
    if breaker_wait is not None and klass is ErrorClass.TRANSIENT:
        # The dependency is down for everyone: park the message without burning an attempt.
        wait = max(breaker_wait, _requested_delay(exc) or 0.0)
        return Decision(Action.RETRY, klass, delay=wait, next_attempt=attempt)
    if attempt - 1 >= chosen.max_retries:
        return Decision(Action.DEAD, klass, reason=MAX_RETRIES_EXCEEDED)
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
