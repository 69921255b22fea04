"""The backoff schedule: bounded, never negative, exact without jitter, safe for huge retries."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.core.retry import JITTERS, RetryPolicy, compute_backoff
from redrive.errors import ConfigError


class FractionRng:
    """An RNG whose ``uniform`` returns ``a + (b - a) * fraction``.

    A fraction in ``[0, 1]`` models a correct RNG at any point of its range (including the
    endpoints ``random.uniform`` can return); one outside models a faulty source.
    """

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


finite_seconds = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)
multipliers = st.floats(min_value=1.0, max_value=10.0, allow_nan=False, allow_infinity=False)
retries = st.integers(min_value=0, max_value=60)
fractions = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, float]:
    """A valid (base, multiplier, max_delay) triple: max_delay >= base."""
    base = draw(finite_seconds)
    extra = draw(finite_seconds)
    return {"base": base, "multiplier": draw(multipliers), "max_delay": base + extra}


def expected_exponential(retry: int, base: float, multiplier: float, max_delay: float) -> float:
    """The un-jittered delay, computed independently of the module (small retries only)."""
    return min(max_delay, base * multiplier**retry)


# --- the plain schedule ---------------------------------------------------------------------


def test_default_policy_waits_one_two_four_seconds() -> None:
    policy = RetryPolicy()  # base 1 s, multiplier 2, no jitter
    rng = random.Random(0)

    delays = [policy.delay(retry, rng) for retry in range(3)]

    assert delays == [1.0, 2.0, 4.0]


def test_plain_schedule_stops_growing_at_max_delay() -> None:
    policy = RetryPolicy(base_delay=1, multiplier=3, max_delay=20)
    rng = random.Random(0)

    delays = [policy.delay(retry, rng) for retry in range(5)]

    assert delays == [1, 3, 9, 20, 20]


def test_multiplier_one_gives_a_constant_delay() -> None:
    policy = RetryPolicy(base_delay=2.5, multiplier=1, max_delay=10)

    assert {policy.delay(retry, random.Random(0)) for retry in range(50)} == {2.5}


def test_zero_base_delay_retries_immediately() -> None:
    policy = RetryPolicy(base_delay=0, max_delay=0)

    assert policy.delay(30, random.Random(0)) == 0.0


@given(schedules(), st.integers(min_value=0, max_value=40))
def test_no_jitter_matches_the_capped_exponential(sched: dict[str, float], retry: int) -> None:
    delay = compute_backoff(retry, jitter="none", rng=random.Random(0), **sched)

    assert delay == pytest.approx(expected_exponential(retry, **sched), rel=1e-9)


def test_negative_retry_number_is_refused() -> None:
    with pytest.raises(ConfigError, match="start at 0"):
        compute_backoff(-1, base=1, multiplier=2, max_delay=10, jitter="none", rng=random.Random())


# --- jitter bounds --------------------------------------------------------------------------


@given(schedules(), retries, st.sampled_from(JITTERS), fractions)
def test_every_jitter_stays_within_zero_and_max_delay(
    sched: dict[str, float], retry: int, jitter: str, fraction: float
) -> None:
    delay = compute_backoff(retry, jitter=jitter, rng=FractionRng(fraction), **sched)  # type: ignore[arg-type]

    assert 0.0 <= delay <= sched["max_delay"]


@given(schedules(), st.integers(min_value=0, max_value=40), fractions)
def test_full_jitter_is_between_zero_and_the_plain_delay(
    sched: dict[str, float], retry: int, fraction: float
) -> None:
    d = expected_exponential(retry, **sched)

    delay = compute_backoff(retry, jitter="full", rng=FractionRng(fraction), **sched)

    assert 0.0 <= delay <= d * (1 + 1e-9)


@given(schedules(), st.integers(min_value=0, max_value=40), fractions)
def test_equal_jitter_keeps_at_least_half_the_plain_delay(
    sched: dict[str, float], retry: int, fraction: float
) -> None:
    d = expected_exponential(retry, **sched)

    delay = compute_backoff(retry, jitter="equal", rng=FractionRng(fraction), **sched)

    assert d / 2 * (1 - 1e-9) <= delay <= d * (1 + 1e-9)


@pytest.mark.parametrize(
    ("jitter", "fraction", "expected"),
    [
        ("full", 0.0, 0.0),
        ("full", 0.25, 2.0),
        ("full", 1.0, 8.0),
        ("equal", 0.0, 4.0),
        ("equal", 0.5, 6.0),
        ("equal", 1.0, 8.0),
    ],
)
def test_jitter_follows_the_injected_rng(jitter: str, fraction: float, expected: float) -> None:
    # Retry 3 of base 1, multiplier 2: the plain delay is 8 s.
    delay = compute_backoff(
        3,
        base=1,
        multiplier=2,
        max_delay=100,
        jitter=jitter,  # type: ignore[arg-type]
        rng=FractionRng(fraction),
    )

    assert delay == expected


@given(
    schedules(),
    retries,
    st.one_of(st.none(), st.floats(min_value=-10.0, max_value=1e6)),
    fractions,
)
def test_decorrelated_jitter_stays_between_base_and_max_delay(
    sched: dict[str, float], retry: int, previous: float | None, fraction: float
) -> None:
    delay = compute_backoff(
        retry, jitter="decorrelated", rng=FractionRng(fraction), previous=previous, **sched
    )

    assert sched["base"] <= delay <= sched["max_delay"]


def test_decorrelated_jitter_grows_from_the_previous_delay() -> None:
    top = FractionRng(1.0)  # the RNG returns the top of its range

    delay = compute_backoff(
        0, base=1, multiplier=2, max_delay=100, jitter="decorrelated", rng=top, previous=5.0
    )

    assert delay == 15.0  # uniform(base, previous * 3) at its top


@given(schedules(), retries, st.sampled_from(JITTERS), st.floats(min_value=-2.0, max_value=3.0))
def test_a_misbehaving_rng_cannot_push_a_delay_out_of_bounds(
    sched: dict[str, float], retry: int, jitter: str, fraction: float
) -> None:
    # A fraction outside [0, 1] makes uniform() answer outside its range.
    delay = compute_backoff(retry, jitter=jitter, rng=FractionRng(fraction), **sched)  # type: ignore[arg-type]

    assert 0.0 <= delay <= sched["max_delay"]


def test_the_same_seed_gives_the_same_schedule() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=60, jitter="full")

    first = [policy.delay(r, random.Random(42)) for r in range(10)]
    second = [policy.delay(r, random.Random(42)) for r in range(10)]

    assert first == second
    assert len(set(first)) > 1  # jitter did vary the delays


# --- huge retry numbers ---------------------------------------------------------------------


@given(
    st.floats(min_value=1e-3, max_value=100.0),
    st.floats(min_value=1.0, max_value=1e5),
    st.floats(min_value=1.0001, max_value=10.0),
    st.integers(min_value=1_000, max_value=10**12),
    st.sampled_from(JITTERS),
)
def test_huge_retry_numbers_do_not_overflow(
    base: float, headroom: float, multiplier: float, retry: int, jitter: str
) -> None:
    max_delay = base * headroom

    delay = compute_backoff(
        retry,
        base=base,
        multiplier=multiplier,
        max_delay=max_delay,
        jitter=jitter,  # type: ignore[arg-type]
        rng=random.Random(retry),
    )

    assert math.isfinite(delay)
    assert 0.0 <= delay <= max_delay


def test_huge_retry_without_jitter_is_exactly_max_delay() -> None:
    delay = compute_backoff(
        10**9, base=1, multiplier=2, max_delay=300, jitter="none", rng=random.Random(0)
    )

    assert delay == 300


def test_tiny_base_delay_with_huge_retry_is_capped_not_overflowing() -> None:
    delay = compute_backoff(
        1100, base=1e-300, multiplier=2, max_delay=1e10, jitter="none", rng=random.Random(0)
    )

    assert delay == 1e10


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"max_retries": -1}, "max_retries=-1: use an integer >= 0"),
        ({"max_retries": 2.5}, "max_retries=2.5: use an integer >= 0"),
        ({"base_delay": -0.1}, "base_delay=-0.1: use a finite number of seconds >= 0"),
        ({"base_delay": math.nan}, "base_delay=nan: use a finite number"),
        ({"base_delay": math.inf}, "base_delay=inf: use a finite number"),
        ({"base_delay": True}, "base_delay=True: use a finite number"),
        ({"base_delay": "1"}, "base_delay='1': use a finite number"),
        ({"max_delay": -5}, "max_delay=-5: use a finite number"),
        ({"max_delay": math.inf}, "max_delay=inf: use a finite number"),
        ({"multiplier": 0.5}, "multiplier=0.5: use a number >= 1"),
        ({"multiplier": math.nan}, "multiplier=nan: use a number >= 1"),
        ({"multiplier": math.inf}, "multiplier=inf: use a number >= 1"),
        ({"multiplier": False}, "multiplier=False: use a number >= 1"),
        ({"max_age": 0}, "max_age=0: use a finite number of seconds > 0"),
        ({"max_age": -1}, "max_age=-1: use a finite number of seconds > 0"),
        ({"max_age": math.nan}, "max_age=nan: use a finite number"),
        ({"max_age": True}, "max_age=True: use a finite number"),
    ],
)
def test_bad_values_are_refused_with_what_to_fix(kwargs: dict[str, object], hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]

    assert hint in str(caught.value)


def test_max_delay_below_base_delay_says_which_to_change() -> None:
    with pytest.raises(ConfigError) as caught:
        RetryPolicy(base_delay=10, max_delay=5)

    message = str(caught.value)
    assert "max_delay=5 is below base_delay=10" in message
    assert "raise max_delay or lower base_delay" in message


def test_unknown_jitter_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        RetryPolicy(jitter="fuzzy")  # type: ignore[arg-type]

    message = str(caught.value)
    assert "jitter='fuzzy'" in message
    for choice in ("none", "full", "equal", "decorrelated"):
        assert choice in message


def test_a_config_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-3)


def test_bool_max_retries_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_retries"):
        RetryPolicy(max_retries=True)


@given(
    st.integers(min_value=0, max_value=100),
    st.floats(min_value=0.0, max_value=1e4),
    st.floats(min_value=1.0, max_value=100.0),
    st.floats(min_value=0.0, max_value=1e4),
    st.sampled_from(JITTERS),
)
def test_every_sane_combination_is_accepted(
    max_retries: int, base: float, multiplier: float, extra: float, jitter: str
) -> None:
    policy = RetryPolicy(
        max_retries=max_retries,
        base_delay=base,
        multiplier=multiplier,
        max_delay=base + extra,
        jitter=jitter,  # type: ignore[arg-type]
    )

    assert 0.0 <= policy.delay(0, FractionRng(0.5)) <= policy.max_delay
