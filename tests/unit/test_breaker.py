"""Circuit breaker: opens on a transient-failure ratio, waits, probes, closes or reopens."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.core.breaker import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    Transition,
    Verdict,
    surely_above,
)
from redrive.errors import ConfigError

T0 = 1_000.0  # a monotonic clock reading; the breaker only sees differences


def breaker(**policy: float) -> CircuitBreaker:
    defaults: dict[str, float] = {
        "threshold": 0.5,
        "window": 10,
        "min_calls": 4,
        "open_seconds": 5.0,
        "probes": 1,
        "certainty": 0.0,  # the plain ratio: exact edges; noise is tested on its own below
        "streak": None,  # and no streak rule (tested on its own below)
    }
    defaults.update(policy)
    return CircuitBreaker(BreakerPolicy(**defaults))  # type: ignore[arg-type]


def dep(cb: CircuitBreaker, now: float, *, fresh: bool = True) -> None:
    """A transient failure (the dependency timed out)."""
    cb.record(Verdict.DEPENDENCY, fresh=fresh, now=now)


def opened(at: float = T0, **policy: float) -> CircuitBreaker:
    cb = breaker(min_calls=1, **policy)
    dep(cb, at)
    assert cb.state is BreakerState.OPEN
    return cb


# --- policy validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"threshold": 0}, "threshold=0: use a ratio in (0, 1]"),
        ({"threshold": 1.5}, "threshold=1.5: use a ratio in (0, 1]"),
        ({"threshold": math.nan}, "threshold=nan"),
        ({"window": 0, "min_calls": 1}, "need 1 <= min_calls <= window"),
        ({"window": 10, "min_calls": 0}, "need 1 <= min_calls <= window"),
        ({"window": 10, "min_calls": 11}, "window=10, min_calls=11"),
        ({"open_seconds": 0}, "open_seconds=0: use a finite number > 0"),
        ({"open_seconds": -1}, "open_seconds=-1"),
        ({"probes": 0}, "probes=0: use an integer >= 1"),
    ],
)
def test_bad_policies_are_refused_with_what_to_fix(kwargs: dict[str, float], hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        BreakerPolicy(**kwargs)  # type: ignore[arg-type]

    assert hint in str(caught.value)


def test_a_nan_open_time_is_refused() -> None:
    with pytest.raises(ConfigError):
        BreakerPolicy(open_seconds=math.nan)


# --- closed ---------------------------------------------------------------------------------


def test_a_new_breaker_is_closed_and_lets_everything_through() -> None:
    cb = breaker()

    assert cb.state is BreakerState.CLOSED
    assert cb.allowance(T0) is None
    assert cb.wait(T0) is None


def test_it_does_not_open_before_min_calls_even_if_all_fail() -> None:
    cb = breaker(min_calls=5)

    for _ in range(4):
        dep(cb, T0)
    assert cb.state is BreakerState.CLOSED

    dep(cb, T0)
    assert cb.state is BreakerState.OPEN


def test_it_opens_when_the_failure_ratio_reaches_the_threshold() -> None:
    cb = breaker(threshold=0.5, min_calls=4)

    cb.success()
    cb.success()
    dep(cb, T0)
    assert cb.state is BreakerState.CLOSED  # 1 of 3: below min_calls anyway

    dep(cb, T0 + 1)
    assert cb.state is BreakerState.OPEN  # 2 of 4 = 0.5


def test_it_stays_closed_just_below_the_threshold() -> None:
    cb = breaker(threshold=0.5, min_calls=4)

    for _ in range(3):
        cb.success()
    for _ in range(2):
        dep(cb, T0)  # 2 of 5 = 0.4

    assert cb.state is BreakerState.CLOSED


def test_non_transient_failures_count_as_health() -> None:
    cb = breaker(threshold=0.5, min_calls=4)

    for _ in range(6):
        cb.record(Verdict.ANSWERED, fresh=True, now=T0)  # the message was bad
    for _ in range(5):
        dep(cb, T0)  # 5 of 11 < 0.5

    assert cb.state is BreakerState.CLOSED


def test_record_maps_verdicts_to_success_and_transient_failure() -> None:
    cb = breaker(threshold=1.0, min_calls=2)

    cb.record(Verdict.SUCCESS, fresh=True, now=T0)
    dep(cb, T0)
    assert cb.state is BreakerState.CLOSED  # 1 of 2

    cb = breaker(threshold=1.0, min_calls=2)
    dep(cb, T0)
    dep(cb, T0)
    assert cb.state is BreakerState.OPEN


def test_a_long_healthy_history_does_not_mask_an_outage() -> None:
    # Outcomes are counted over the last window..2*window calls, not since the start.
    cb = breaker(threshold=0.5, window=10, min_calls=10)
    for _ in range(1_000):
        cb.success()

    for _ in range(9):
        dep(cb, T0)
    assert cb.state is BreakerState.CLOSED  # 9 of 20

    dep(cb, T0)
    assert cb.state is BreakerState.OPEN  # 10 of 20


def test_the_previous_window_still_counts_after_a_rotation() -> None:
    # An outage that starts just before a window boundary must not wait for a fresh
    # window to fill: the last window's outcomes stay in the ratio.
    cb = breaker(threshold=0.5, window=10, min_calls=10)
    for _ in range(8):
        cb.success()
    dep(cb, T0)
    dep(cb, T0)  # 2 of 10, and the window rotates

    for _ in range(5):
        dep(cb, T0)
    assert cb.state is BreakerState.CLOSED  # 7 of 15

    dep(cb, T0)
    assert cb.state is BreakerState.OPEN  # 8 of 16


def test_a_ratio_exactly_at_the_threshold_opens_whatever_the_rounding() -> None:
    cb = breaker(threshold=0.55, window=100, min_calls=100)

    for _ in range(45):
        cb.success()
    for _ in range(55):
        dep(cb, T0)

    assert cb.state is BreakerState.OPEN


@given(st.integers(min_value=1, max_value=20), st.integers(min_value=1, max_value=40), st.data())
def test_within_one_window_it_opens_exactly_when_the_ratio_is_reached(
    twentieths: int, window: int, data: st.DataObject
) -> None:
    # Thresholds on a 5 % grid, windows up to 40: there float rounding does not bite (the
    # exact edge is the xfail test above), so the model can compare exact fractions.
    threshold = Fraction(twentieths, 20)
    min_calls = data.draw(st.integers(min_value=1, max_value=window))
    outcomes = data.draw(st.lists(st.booleans(), max_size=window - 1))  # no window rotation
    cb = breaker(threshold=twentieths / 20, window=window, min_calls=min_calls)

    should_open = False
    fails = 0
    for calls, transient_failure in enumerate(outcomes, start=1):
        cb.record(Verdict.DEPENDENCY if transient_failure else Verdict.SUCCESS, fresh=True, now=T0)
        fails += transient_failure
        if transient_failure and calls >= min_calls:
            should_open = should_open or Fraction(fails, calls) >= threshold
        if should_open:
            break

    assert (cb.state is BreakerState.OPEN) is should_open


# --- open -----------------------------------------------------------------------------------


def test_an_open_breaker_reads_nothing_for_open_seconds() -> None:
    cb = opened(at=T0, open_seconds=5.0)

    assert cb.allowance(T0) == 0
    assert cb.allowance(T0 + 4.999) == 0
    assert cb.state is BreakerState.OPEN


def test_wait_counts_down_to_the_probe() -> None:
    cb = opened(at=T0, open_seconds=5.0)

    assert cb.wait(T0) == 5.0
    assert cb.wait(T0 + 3.5) == 1.5
    assert cb.wait(T0 + 60) == 0.0  # never negative


def test_successes_while_open_do_not_close_it() -> None:
    # In-flight messages may finish after the breaker opened; only a probe may close it.
    cb = opened(at=T0)

    for _ in range(100):
        cb.success()

    assert cb.state is BreakerState.OPEN
    assert cb.allowance(T0 + 1) == 0


# --- half-open ------------------------------------------------------------------------------


def test_after_open_seconds_it_is_half_open_and_allows_the_probes() -> None:
    cb = opened(at=T0, open_seconds=5.0, probes=2)

    assert cb.allowance(T0 + 5.0) == 2
    assert cb.state is BreakerState.HALF_OPEN


def test_each_probe_taken_lowers_the_allowance() -> None:
    cb = opened(at=T0, probes=2)
    cb.allowance(T0 + 10)

    cb.take_probe()
    assert cb.allowance(T0 + 10) == 1
    cb.take_probe()
    assert cb.allowance(T0 + 10) == 0
    cb.take_probe()  # never below zero
    assert cb.allowance(T0 + 10) == 0


def test_taking_a_probe_while_closed_changes_nothing() -> None:
    cb = breaker()

    cb.take_probe()

    assert cb.allowance(T0) is None


def test_a_successful_probe_closes_the_breaker() -> None:
    cb = opened(at=T0)
    cb.allowance(T0 + 10)
    cb.take_probe()

    cb.success()

    assert cb.state is BreakerState.CLOSED
    assert cb.allowance(T0 + 10) is None
    assert cb.wait(T0 + 10) is None


def test_a_probe_that_proves_nothing_gives_its_slot_back() -> None:
    # Bad input, a business error or an explicit Retry says nothing about the dependency
    # (nor about a bad deploy): the breaker stays half-open and lets another probe go.
    cb = opened(at=T0)
    for verdict in (Verdict.ANSWERED, Verdict.NEUTRAL):
        assert cb.allowance(T0 + 10) == 1
        cb.take_probe()
        assert cb.allowance(T0 + 10) == 0

        cb.record(verdict, fresh=True, now=T0 + 10)

        assert cb.state is BreakerState.HALF_OPEN
    assert cb.allowance(T0 + 10) == 1


def test_a_failed_probe_reopens_for_a_full_open_period() -> None:
    cb = opened(at=T0, open_seconds=5.0)
    cb.allowance(T0 + 5)
    cb.take_probe()

    dep(cb, T0 + 7)

    assert cb.state is BreakerState.OPEN
    assert cb.allowance(T0 + 11.9) == 0
    assert cb.wait(T0 + 7) == 5.0
    assert cb.allowance(T0 + 12) == 1


def test_a_closed_breaker_starts_counting_afresh() -> None:
    cb = breaker(threshold=0.5, min_calls=4)
    for _ in range(4):
        dep(cb, T0)
    cb.allowance(T0 + 5)
    cb.success()  # the probe closes it

    for _ in range(3):
        dep(cb, T0 + 6)
    assert cb.state is BreakerState.CLOSED  # 3 calls: below min_calls again

    dep(cb, T0 + 6)
    assert cb.state is BreakerState.OPEN


def test_the_whole_cycle_with_an_injected_clock() -> None:
    cb = breaker(threshold=0.5, window=10, min_calls=4, open_seconds=2.0, probes=1)
    clock = T0
    states: list[object] = []

    for _ in range(4):  # the dependency goes down
        dep(cb, clock)
    states.append(cb.state)
    clock += 1.0
    states.append((cb.allowance(clock), cb.state))
    clock += 1.0
    states.append((cb.allowance(clock), cb.state))  # probe time
    cb.take_probe()
    dep(cb, clock)  # still down
    states.append((cb.allowance(clock), cb.state))
    clock += 2.0
    states.append((cb.allowance(clock), cb.state))
    cb.take_probe()
    cb.success()  # back up
    states.append((cb.allowance(clock), cb.state))

    assert states == [
        BreakerState.OPEN,
        (0, BreakerState.OPEN),
        (1, BreakerState.HALF_OPEN),
        (0, BreakerState.OPEN),
        (1, BreakerState.HALF_OPEN),
        (None, BreakerState.CLOSED),
    ]


# --- what is judged: fresh messages, not the retry stream's selection -----------------------


def test_retries_never_open_the_breaker() -> None:
    # With 3% of keys failing, the retry stream carries nearly only failures: counting it
    # would open the breaker although the dependency serves 97% of the traffic.
    cb = breaker(threshold=0.5, min_calls=4)
    for i in range(1_000):
        if i % 33 == 0:
            dep(cb, T0)  # a fresh message of a failing key
        else:
            cb.success()
        dep(cb, T0, fresh=False)  # and a failing retry after every message

    assert cb.state is BreakerState.CLOSED


def test_a_real_outage_still_opens_it() -> None:
    cb = CircuitBreaker(BreakerPolicy())  # the defaults
    for _ in range(500):
        cb.success()

    for _ in range(19):
        dep(cb, T0, fresh=False)  # retries fail too, uncounted
        dep(cb, T0)
    assert cb.state is BreakerState.CLOSED  # 19 of 69 fresh outcomes

    dep(cb, T0)
    assert cb.state is BreakerState.OPEN  # 20 in a row: the streak rule
    assert cb.cause == "dependency"


@given(st.floats(min_value=0.0, max_value=0.45), st.integers(min_value=0, max_value=2**32))
def test_a_failing_subset_below_the_threshold_never_opens_it(share: float, seed: int) -> None:
    import random

    rng = random.Random(seed)
    cb = breaker(threshold=0.5, window=50, min_calls=20)
    # Keys fail by a hash: a fixed share of fresh messages, spread evenly.
    for i in range(2_000):
        if int((i + 1) * share) > int(i * share):
            dep(cb, T0)
            for _ in range(rng.randrange(4)):
                dep(cb, T0, fresh=False)
        else:
            cb.success()

    assert cb.state is BreakerState.CLOSED


def test_explicit_retry_is_not_counted() -> None:
    cb = breaker(threshold=0.5, min_calls=4)

    for _ in range(100):
        cb.record(Verdict.NEUTRAL, fresh=True, now=T0)
    dep(cb, T0)
    dep(cb, T0)
    cb.success()
    cb.success()

    assert cb.state is BreakerState.CLOSED  # 2 of 4, NEUTRAL not in the ratio...
    dep(cb, T0)
    assert cb.state is BreakerState.OPEN  # ...3 of 5 opens it


# --- a storm of handler failures (a bad deploy) ---------------------------------------------


def test_a_storm_of_handler_failures_opens_it_with_its_own_cause() -> None:
    cb = breaker(min_calls=10, storm_threshold=0.8)
    for _ in range(10):
        cb.record(Verdict.HANDLER, fresh=True, now=T0)

    assert cb.state is BreakerState.OPEN
    assert cb.cause == "handler"


def test_bad_input_is_not_a_storm() -> None:
    # A poison storm (35% undecodable bodies, or even all of them) is the messages' fault:
    # they go to the DLQ and the handler keeps running.
    cb = breaker(min_calls=10, storm_threshold=0.8)
    for _ in range(100):
        cb.record(Verdict.ANSWERED, fresh=True, now=T0)

    assert cb.state is BreakerState.CLOSED


def test_handler_failures_below_the_storm_threshold_keep_it_closed() -> None:
    cb = breaker(window=100, min_calls=10, storm_threshold=0.8)
    for i in range(1_000):
        if int((i + 1) * 0.7) > int(i * 0.7):
            cb.record(Verdict.HANDLER, fresh=True, now=T0)
        else:
            cb.success()

    assert cb.state is BreakerState.CLOSED


def test_the_storm_check_can_be_turned_off() -> None:
    cb = breaker(min_calls=10, storm_threshold=None)  # type: ignore[arg-type]
    for _ in range(100):
        cb.record(Verdict.HANDLER, fresh=True, now=T0)

    assert cb.state is BreakerState.CLOSED


def test_a_bad_storm_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"storm_threshold=1\.5"):
        BreakerPolicy(storm_threshold=1.5)


# --- several probes -------------------------------------------------------------------------


def test_it_reopens_only_when_every_probe_failed() -> None:
    cb = opened(at=T0, probes=3)
    assert cb.allowance(T0 + 5) == 3
    for _ in range(3):
        cb.take_probe()

    dep(cb, T0 + 5)
    dep(cb, T0 + 5)
    assert cb.state is BreakerState.HALF_OPEN
    dep(cb, T0 + 5)
    assert cb.state is BreakerState.OPEN


def test_one_good_probe_among_several_closes_it() -> None:
    cb = opened(at=T0, probes=3)
    cb.allowance(T0 + 5)

    dep(cb, T0 + 5)
    cb.success(fresh=False)  # any success proves the dependency answers

    assert cb.state is BreakerState.CLOSED


def test_every_transition_is_reported_with_its_evidence() -> None:
    seen: list[Transition] = []
    cb = CircuitBreaker(
        BreakerPolicy(
            threshold=0.5, window=10, min_calls=4, open_seconds=1.0, probes=1, certainty=0
        ),
        seen.append,
    )
    cb.success()
    for _ in range(3):
        dep(cb, T0)  # 3 of 4
    cb.allowance(T0 + 1)
    dep(cb, T0 + 1)  # the probe fails
    cb.allowance(T0 + 2)
    cb.success()

    assert [(t.before, t.after, t.cause) for t in seen] == [
        (BreakerState.CLOSED, BreakerState.OPEN, "dependency"),
        (BreakerState.OPEN, BreakerState.HALF_OPEN, "dependency"),
        (BreakerState.HALF_OPEN, BreakerState.OPEN, "dependency"),
        (BreakerState.OPEN, BreakerState.HALF_OPEN, "dependency"),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED, ""),
    ]
    assert (seen[0].failures, seen[0].calls, seen[0].ratio) == (3, 4, 0.75)


# --- noise: a ratio must clear sampling noise before it counts ------------------------------


def test_twenty_calls_at_half_failures_are_noise_but_all_failing_is_an_outage() -> None:
    assert not surely_above(10, 20, 0.5, 3.0)  # 40% keys failing shows this 1 time in 4
    assert not surely_above(16, 20, 0.5, 3.0)
    assert surely_above(17, 20, 0.5, 3.0)
    assert surely_above(20, 20, 0.5, 3.0)
    assert surely_above(65, 100, 0.5, 3.0)
    assert surely_above(10, 20, 0.5, 0.0)  # certainty 0: the plain ratio


def test_with_the_default_certainty_a_40_percent_subset_does_not_open_it_by_chance() -> None:
    import random

    opened_runs = 0
    for seed in range(200):
        rng = random.Random(seed)
        cb = CircuitBreaker(BreakerPolicy())  # defaults: 0.5, window 50, min 20, z = 3
        for _ in range(2_000):
            if rng.random() < 0.4:
                dep(cb, T0)
            else:
                cb.success()
        opened_runs += cb.state is not BreakerState.CLOSED

    assert opened_runs == 0


def test_with_the_default_certainty_an_outage_opens_it_within_min_calls() -> None:
    cb = CircuitBreaker(BreakerPolicy())
    for _ in range(19):
        dep(cb, T0)
    assert cb.state is BreakerState.CLOSED

    dep(cb, T0)
    assert cb.state is BreakerState.OPEN


def test_a_streak_opens_it_after_a_long_healthy_history() -> None:
    cb = CircuitBreaker(BreakerPolicy(streak=10))
    for _ in range(10_000):
        cb.success()
    for _ in range(9):
        dep(cb, T0)
    cb.record(Verdict.ANSWERED, fresh=True, now=T0)  # the dependency answered: streak broken
    for _ in range(9):
        dep(cb, T0)
    assert cb.state is BreakerState.CLOSED

    dep(cb, T0)
    assert cb.state is BreakerState.OPEN
    assert cb.cause == "dependency"


def test_a_streak_of_handler_failures_is_a_storm() -> None:
    cb = CircuitBreaker(BreakerPolicy(streak=10))
    for _ in range(1_000):
        cb.success()
    for _ in range(10):
        cb.record(Verdict.HANDLER, fresh=True, now=T0)

    assert (cb.state, cb.cause) == (BreakerState.OPEN, "handler")


def test_retries_and_explicit_retry_do_not_break_or_extend_a_streak() -> None:
    cb = CircuitBreaker(BreakerPolicy(streak=5))
    for _ in range(4):
        dep(cb, T0)
        cb.success(fresh=False)  # a retry of some other key succeeding says nothing here
        cb.record(Verdict.NEUTRAL, fresh=True, now=T0)
    assert cb.state is BreakerState.CLOSED
    dep(cb, T0)
    assert cb.state is BreakerState.OPEN
