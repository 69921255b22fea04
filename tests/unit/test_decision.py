"""decide_failure: retry while attempts last, then dead-letter with the right reason."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.core.breaker import Verdict
from redrive.core.classify import ErrorClass, Rules
from redrive.core.decision import (
    MAX_AGE_EXCEEDED,
    MAX_RETRIES_EXCEEDED,
    PAYLOAD_TOO_LARGE,
    PERMANENT_ERROR,
    POISON,
    Action,
    Decision,
    decide_failure,
    verdict_of,
)
from redrive.core.retry import RetryPolicy
from redrive.errors import ConfigError, DecodeError, Reject, Retry, ValidationError

NOW_MS = 1_700_000_000_000
POLICY = RetryPolicy(max_retries=3, base_delay=1, multiplier=2, max_delay=300)


class TopRng:
    """Always answers the top of the range (deterministic decorrelated jitter)."""

    def uniform(self, a: float, b: float) -> float:
        return b


def decide(exc: BaseException, attempt: int = 1, **overrides: Any) -> Decision:
    kwargs: dict[str, Any] = {
        "attempt": attempt,
        "policy": POLICY,
        "rng": random.Random(0),
        "now_ms": NOW_MS,
        "first_seen_ms": NOW_MS - 1_000,
    }
    kwargs.update(overrides)
    return decide_failure(exc, **kwargs)


# --- attempts and retries -------------------------------------------------------------------


def test_each_retry_carries_the_next_attempt_and_the_backoff_delay() -> None:
    decisions = [decide(RuntimeError("boom"), attempt) for attempt in (1, 2, 3)]

    assert [d.action for d in decisions] == [Action.RETRY] * 3
    assert [d.next_attempt for d in decisions] == [2, 3, 4]
    assert [d.delay for d in decisions] == [1.0, 2.0, 4.0]
    assert {d.error_class for d in decisions} == {ErrorClass.PROCESSING}
    assert {d.reason for d in decisions} == {None}


def test_after_the_last_retry_the_message_is_dead() -> None:
    decision = decide(TimeoutError(), attempt=4)  # first delivery + 3 retries

    assert decision.action is Action.DEAD
    assert decision.reason == MAX_RETRIES_EXCEEDED
    assert decision.error_class is ErrorClass.TRANSIENT


def test_zero_retries_dead_letters_the_first_failure() -> None:
    decision = decide(RuntimeError(), attempt=1, policy=RetryPolicy(max_retries=0))

    assert (decision.action, decision.reason) == (Action.DEAD, MAX_RETRIES_EXCEEDED)


@given(st.integers(min_value=0, max_value=25), st.integers(min_value=1, max_value=40))
def test_attempts_one_to_max_retries_retry_and_later_ones_die(
    max_retries: int, attempt: int
) -> None:
    policy = RetryPolicy(max_retries=max_retries, base_delay=0.5, max_delay=30)

    decision = decide(ConnectionError(), attempt, policy=policy)

    if attempt <= max_retries:
        assert decision.action is Action.RETRY
        assert decision.next_attempt == attempt + 1
        assert decision.delay == min(30.0, 0.5 * 2 ** (attempt - 1))
    else:
        assert decision.action is Action.DEAD
        assert decision.reason == MAX_RETRIES_EXCEEDED


def test_previous_delay_feeds_decorrelated_jitter() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=100, jitter="decorrelated")

    decision = decide(RuntimeError(), attempt=2, policy=policy, rng=TopRng(), previous_delay=4.0)

    assert decision.delay == 12.0  # uniform(base, previous * 3) at its top


def test_each_error_class_can_have_its_own_policy() -> None:
    by_class = {
        ErrorClass.TRANSIENT: RetryPolicy(max_retries=10, base_delay=0.1, max_delay=1),
        ErrorClass.PROCESSING: RetryPolicy(max_retries=0),
    }

    transient = decide(TimeoutError(), attempt=5, by_class=by_class)
    processing = decide(RuntimeError(), attempt=1, by_class=by_class)

    assert (transient.action, transient.delay) == (Action.RETRY, 1.0)
    assert (processing.action, processing.reason) == (Action.DEAD, MAX_RETRIES_EXCEEDED)


# --- permanent failures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [KeyError("order_id"), TypeError("bad type"), ValidationError("amount"), Reject("negative")],
    ids=lambda e: type(e).__name__,
)
def test_permanent_errors_go_straight_to_the_dlq(exc: BaseException) -> None:
    decision = decide(exc, attempt=1)

    assert decision.action is Action.DEAD
    assert decision.reason == PERMANENT_ERROR
    assert decision.error_class is ErrorClass.PERMANENT


def test_json_and_unicode_errors_raised_by_the_handler_are_poison() -> None:
    try:
        json.loads("{")
    except json.JSONDecodeError as exc:
        json_exc = exc
    unicode_exc = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    assert decide(json_exc).reason == POISON
    assert decide(unicode_exc).reason == POISON


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (DecodeError("not JSON"), POISON),
        (DecodeError("too big", reason=PAYLOAD_TOO_LARGE), PAYLOAD_TOO_LARGE),
    ],
)
def test_a_decode_error_dead_letters_with_its_own_reason(exc: DecodeError, reason: str) -> None:
    decision = decide(exc, attempt=1)

    assert (decision.action, decision.reason) == (Action.DEAD, reason)


def test_a_decode_error_is_never_retried_even_if_rules_call_it_transient() -> None:
    rules = Rules(transient=(DecodeError,))

    decision = decide(DecodeError("bad"), attempt=1, rules=rules, breaker_wait=5.0)

    assert (decision.action, decision.reason) == (Action.DEAD, POISON)


def test_rules_can_make_a_default_permanent_error_retryable() -> None:
    decision = decide(KeyError("cache miss"), attempt=1, rules=Rules(transient=(KeyError,)))

    assert decision.action is Action.RETRY
    assert decision.error_class is ErrorClass.TRANSIENT


# --- max age --------------------------------------------------------------------------------


def test_a_message_older_than_max_age_is_dead() -> None:
    policy = RetryPolicy(max_retries=100, max_age=60)

    decision = decide(TimeoutError(), attempt=2, policy=policy, first_seen_ms=NOW_MS - 60_001)

    assert (decision.action, decision.reason) == (Action.DEAD, MAX_AGE_EXCEEDED)


def test_a_message_exactly_max_age_old_still_retries() -> None:
    policy = RetryPolicy(max_retries=100, max_age=60)

    decision = decide(TimeoutError(), attempt=2, policy=policy, first_seen_ms=NOW_MS - 60_000)

    assert decision.action is Action.RETRY


def test_max_age_beats_an_open_breaker() -> None:
    policy = RetryPolicy(max_age=1)

    decision = decide(TimeoutError(), policy=policy, first_seen_ms=NOW_MS - 5_000, breaker_wait=3)

    assert decision.reason == MAX_AGE_EXCEEDED


def test_permanent_reason_wins_over_max_age() -> None:
    policy = RetryPolicy(max_age=1)

    decision = decide(KeyError("x"), policy=policy, first_seen_ms=NOW_MS - 5_000)

    assert decision.reason == PERMANENT_ERROR


# --- Retry(delay=...) -----------------------------------------------------------------------


def test_retry_delay_overrides_the_backoff() -> None:
    decision = decide(Retry(delay=7.5), attempt=3)

    assert decision.action is Action.RETRY
    assert decision.delay == 7.5
    assert decision.next_attempt == 4  # an explicit Retry still consumes an attempt


def test_retry_without_delay_uses_the_backoff() -> None:
    decision = decide(Retry(), attempt=2)

    assert (decision.delay, decision.error_class) == (2.0, ErrorClass.TRANSIENT)


def test_retry_when_no_attempts_are_left_is_dead() -> None:
    decision = decide(Retry(delay=1), attempt=4)

    assert (decision.action, decision.reason) == (Action.DEAD, MAX_RETRIES_EXCEEDED)


def test_a_negative_retry_delay_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"delay=-1.*>= 0"):
        Retry(delay=-1)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_retry_delay_is_refused(bad: float) -> None:
    with pytest.raises(ConfigError):
        Retry(delay=bad)


# --- open circuit breaker -------------------------------------------------------------------


def test_an_open_breaker_parks_a_transient_failure_without_using_an_attempt() -> None:
    decision = decide(TimeoutError(), attempt=2, breaker_wait=4.0)

    assert decision.action is Action.RETRY
    assert decision.next_attempt == 2
    assert decision.delay == 4.0


def test_an_open_breaker_parks_even_when_attempts_are_exhausted() -> None:
    decision = decide(ConnectionError(), attempt=99, breaker_wait=1.0)

    assert (decision.action, decision.next_attempt) == (Action.RETRY, 99)


def test_an_open_breaker_waits_for_the_longer_of_its_wait_and_a_requested_delay() -> None:
    assert decide(Retry(delay=10), breaker_wait=4.0).delay == 10.0
    assert decide(Retry(delay=1), breaker_wait=4.0).delay == 4.0


def test_an_open_breaker_does_not_spare_processing_errors() -> None:
    decision = decide(RuntimeError("business rule"), attempt=2, breaker_wait=4.0)

    assert decision.next_attempt == 3
    assert decision.delay == 2.0


@given(
    st.integers(min_value=1, max_value=1000),
    st.floats(min_value=0.0, max_value=3600.0),
    st.sampled_from([TimeoutError(), ConnectionError(), Retry()]),
)
def test_a_parked_message_keeps_its_attempt(attempt: int, wait: float, exc: Exception) -> None:
    decision = decide(exc, attempt=attempt, breaker_wait=wait)

    assert decision == Decision(
        Action.RETRY, ErrorClass.TRANSIENT, delay=wait, next_attempt=attempt
    )


# --- what the breaker hears, and what an open breaker parks ---------------------------------


@pytest.mark.parametrize(
    ("exc", "rules", "verdict"),
    [
        (TimeoutError(), Rules(), Verdict.DEPENDENCY),
        (Retry(delay=1), Rules(), Verdict.NEUTRAL),
        (TypeError("handle() takes 0 positional arguments"), Rules(), Verdict.HANDLER),
        (KeyError("order_id"), Rules(), Verdict.HANDLER),
        (ValidationError("amount < 0"), Rules(), Verdict.ANSWERED),
        (DecodeError("not JSON"), Rules(), Verdict.ANSWERED),
        (Reject("negative"), Rules(), Verdict.ANSWERED),
        (json.JSONDecodeError("x", "{", 0), Rules(), Verdict.ANSWERED),
        (RuntimeError("business rule"), Rules(), Verdict.ANSWERED),
        (KeyError("order_id"), Rules(permanent=(KeyError,)), Verdict.ANSWERED),  # declared input
    ],
)
def test_each_failure_gets_the_verdict_the_breaker_needs(
    exc: BaseException, rules: Rules, verdict: Verdict
) -> None:
    assert verdict_of(exc, rules.classify(exc), rules) is verdict


def test_an_open_breaker_parks_a_handler_failure_instead_of_dead_lettering_it() -> None:
    decision = decide(TypeError("bad deploy"), attempt=2, breaker_wait=4.0)

    assert decision.action is Action.RETRY
    assert (decision.delay, decision.next_attempt) == (4.0, 2)  # no attempt used


def test_an_open_breaker_still_dead_letters_bad_input_at_once() -> None:
    for exc in (ValidationError("no order_id"), DecodeError("not JSON"), Reject("fraud")):
        assert decide(exc, breaker_wait=4.0).action is Action.DEAD


def test_a_processing_error_is_retried_as_usual_while_the_breaker_is_open() -> None:
    decision = decide(RuntimeError("out of stock"), attempt=1, breaker_wait=4.0)

    assert (decision.action, decision.next_attempt) == (Action.RETRY, 2)


def test_retry_by_class_can_retry_permanent_errors() -> None:
    # Once silently ignored: a policy for PERMANENT now retries non-input permanent errors.
    by_class = {ErrorClass.PERMANENT: RetryPolicy(max_retries=1, base_delay=0.5, jitter="none")}

    first = decide(KeyError("x"), attempt=1, by_class=by_class)
    last = decide(KeyError("x"), attempt=2, by_class=by_class)
    bad = decide(ValidationError("x"), attempt=1, by_class=by_class)

    assert (first.action, first.delay) == (Action.RETRY, 0.5)
    assert (last.action, last.reason) == (Action.DEAD, MAX_RETRIES_EXCEEDED)
    assert (bad.action, bad.reason) == (Action.DEAD, PERMANENT_ERROR)
