"""A circuit breaker that judges the dependency and the deploy, not the retry stream (pure).

What it counts (docs/concepts.md, "Circuit breaker"):

- Only *fresh* outcomes (first deliveries from the source stream) enter the trip ratio.
  Retries are a selection of messages that already failed: with 3% of keys failing, the
  retry stream is nearly 100% failures, so counting it would open the breaker although
  the dependency serves 97% of the traffic. Explicit ``Retry`` is the handler's own
  choice and is not counted at all.
- Two ratios over the last ``window`` to ``2 * window`` fresh outcomes, once at least
  ``min_calls`` are counted: transient failures above ``threshold`` (the dependency is
  down) and, with ``storm_threshold`` set, *handler failures* above ``storm_threshold``
  (permanent errors that are not bad input: a ``TypeError`` on every message is a bad
  deploy, not bad data). "Above" means beyond sampling noise (:func:`surely_above`), so
  a failing subset near the threshold does not open it by chance. ``streak`` fresh
  failures in a row open it too, so an outage after a long healthy history shows at
  once. Either opens the breaker; :attr:`CircuitBreaker.cause` says which.
- Open: nothing new is read for ``open_seconds``; failures of work already started are
  parked by the caller (re-scheduled without using an attempt). Then half-open:
  ``probes`` messages may run (the caller prefers fresh ones); the first success closes
  the breaker, ``probes`` failures open it again. An outcome that proves nothing (a
  ``Retry``, bad input, a business error) gives its probe slot back.

Every change of state is reported to ``listener`` as a :class:`Transition` with the ratio
and the sample size that caused it, so the caller can log and count it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from redrive.errors import ConfigError


class BreakerState(StrEnum):
    """States of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Verdict(StrEnum):
    """What one handler outcome says about the dependency and the deploy."""

    SUCCESS = "success"
    #: The handler ran and failed on its own terms (bad input, a business rule).
    ANSWERED = "answered"
    #: A transient failure (timeout, connection error): the dependency may be down.
    DEPENDENCY = "dependency"
    #: A permanent failure that is not bad input: the handler itself may be broken.
    HANDLER = "handler"
    #: Proves nothing (an explicit ``Retry``): not counted.
    NEUTRAL = "neutral"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a handler's circuit breaker opens and how it probes.

    Example::

        BreakerPolicy(threshold=0.5, window=50, min_calls=20, open_seconds=10)

    ``storm_threshold=None`` turns off the pause on a storm of handler failures.
    ``certainty`` is how many standard deviations of sampling noise a ratio must clear
    before it counts as above its threshold (0: the plain ratio; see :func:`surely_above`).
    ``streak`` fresh failures in a row open it whatever the ratio (``None``: never).
    """

    threshold: float = 0.5
    window: int = 50
    min_calls: int = 20
    open_seconds: float = 5.0
    probes: int = 3
    storm_threshold: float | None = 0.8
    certainty: float = 3.0
    streak: int | None = 20

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold={self.threshold!r}: use a ratio in (0, 1]")
        storm = self.storm_threshold
        if storm is not None and not 0 < storm <= 1:
            raise ConfigError(
                f"storm_threshold={storm!r}: use a ratio in (0, 1], or None to turn it off"
            )
        if self.window < 1 or self.min_calls < 1 or self.min_calls > self.window:
            raise ConfigError(
                f"window={self.window}, min_calls={self.min_calls}: need 1 <= min_calls <= window"
            )
        if not (isinstance(self.open_seconds, int | float) and 0 < self.open_seconds < math.inf):
            raise ConfigError(f"open_seconds={self.open_seconds!r}: use a finite number > 0")
        if not 0 <= self.certainty <= 10:
            raise ConfigError(f"certainty={self.certainty!r}: use 0 (plain ratio) to 10")
        if self.streak is not None and (not isinstance(self.streak, int) or self.streak < 2):
            raise ConfigError(f"streak={self.streak!r}: use an integer >= 2, or None")
        if not isinstance(self.probes, int) or self.probes < 1:
            raise ConfigError(f"probes={self.probes!r}: use an integer >= 1")


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a breaker's state, with the evidence behind it.

    ``failures`` of ``calls`` counted outcomes caused it (for a reopen: failed probes).
    ``cause`` is ``dependency`` or ``handler`` (why it opened), empty when it closed.
    """

    before: BreakerState
    after: BreakerState
    cause: str
    failures: int
    calls: int

    @property
    def ratio(self) -> float:
        """``failures / calls`` (0 when nothing was counted)."""
        return self.failures / self.calls if self.calls else 0.0


Listener = Callable[[Transition], None]


def surely_above(failures: int, calls: int, threshold: float, z: float) -> bool:
    """Whether ``failures / calls`` is above ``threshold`` beyond sampling noise.

    The Wilson score lower bound, ``z`` standard deviations below the ratio (``z=0``: the
    plain ratio). With 40% of keys failing, a window of 20 fresh messages holds 10
    failures one time in four, and a plain ratio would open the breaker on that noise; at
    ``z=3`` the bound needs 17 of 20 (or 65 of 100) before it calls 50%. A real outage
    (every call failing) still opens at once: ``n / (n + z²)`` is 0.69 for 20 calls.
    """
    if calls <= 0:
        return False
    p = failures / calls
    z2n = z * z / calls
    centre = p + z2n / 2
    spread = z * math.sqrt(p * (1 - p) / calls + z2n / (4 * calls))
    return (centre - spread) / (1 + z2n) >= threshold


class CircuitBreaker:
    """State machine of one handler's breaker. Times are seconds on a monotonic clock.

    Fresh outcomes are counted in two buckets of ``window`` calls (the current and the
    previous one), so a ratio covers the last ``window`` to ``2 * window`` of them and a
    success costs one increment on the hot path.
    """

    __slots__ = ("_calls", "_dep", "_half_fails", "_handler", "_opened_at", "_prev",
                 "_probes_left", "_streak", "cause", "listener", "policy", "state")  # fmt: skip

    def __init__(self, policy: BreakerPolicy, listener: Listener | None = None) -> None:
        self.policy = policy
        self.listener = listener
        self.state = BreakerState.CLOSED
        self.cause = ""
        self._calls = self._dep = self._handler = 0
        self._prev = (0, 0, 0)  # calls, dependency failures, handler failures
        self._opened_at = 0.0
        self._probes_left = 0
        self._half_fails = 0
        # Consecutive fresh failures of one verdict (a sign), whatever the history.
        self._streak = 0

    def success(self, fresh: bool = True) -> None:
        """Record a success (closes a half-open breaker, whatever the message)."""
        if self.state is not BreakerState.CLOSED:
            if self.state is BreakerState.HALF_OPEN:
                self._close()
            return
        if fresh:
            self._calls += 1
            self._streak = 0
            if self._calls >= self.policy.window:
                self._rotate()

    def record(self, verdict: Verdict, *, fresh: bool, now: float) -> None:
        """Record one outcome of a handler run (``fresh``: a first delivery)."""
        if verdict is Verdict.SUCCESS:
            self.success(fresh)
        elif self.state is BreakerState.HALF_OPEN:
            self._probe_result(verdict, now)
        elif self.state is BreakerState.CLOSED and fresh and verdict is not Verdict.NEUTRAL:
            self._count(verdict, now)
        # Open: a late outcome of work started before opening; keep the timer.

    def allowance(self, now: float) -> int | None:
        """How many messages may be read now: ``None`` = no limit, ``0`` = none."""
        if self.state is BreakerState.OPEN:
            if now - self._opened_at < self.policy.open_seconds:
                return 0
            self._enter_half_open()
        if self.state is BreakerState.HALF_OPEN:
            return self._probes_left
        return None

    def take_probe(self) -> None:
        """Count one message started while half-open."""
        if self.state is BreakerState.HALF_OPEN and self._probes_left > 0:
            self._probes_left -= 1

    def wait(self, now: float) -> float | None:
        """Seconds until the next probe while open or half-open, else ``None``."""
        if self.state is BreakerState.CLOSED:
            return None
        return max(0.0, self.policy.open_seconds - (now - self._opened_at))

    # -- internals --------------------------------------------------------------------

    def _count(self, verdict: Verdict, now: float) -> None:
        self._calls += 1
        self._dep += verdict is Verdict.DEPENDENCY
        self._handler += verdict is Verdict.HANDLER
        # +n for n dependency failures in a row, -n for handler failures, 0 otherwise.
        if verdict is Verdict.DEPENDENCY:
            self._streak = self._streak + 1 if self._streak > 0 else 1
        elif verdict is Verdict.HANDLER:
            self._streak = self._streak - 1 if self._streak < 0 else -1
        else:
            self._streak = 0
        if self._opened_by_streak(now):
            return
        calls = self._calls + self._prev[0]
        if calls >= self.policy.min_calls:
            dep = self._dep + self._prev[1]
            handler = self._handler + self._prev[2]
            storm = self.policy.storm_threshold
            if verdict is Verdict.DEPENDENCY and surely_above(
                dep, calls, self.policy.threshold, self.policy.certainty
            ):
                self._open(now, "dependency", dep, calls)
                return
            if (
                verdict is Verdict.HANDLER
                and storm is not None
                and surely_above(handler, calls, storm, self.policy.certainty)
            ):
                self._open(now, "handler", handler, calls)
                return
        if self._calls >= self.policy.window:
            self._rotate()

    def _opened_by_streak(self, now: float) -> bool:
        """``streak`` fresh failures in a row open it at once, whatever came before.

        An outage shows at once this way even after a long healthy history (the ratio
        would wait for the window to turn over); a failing subset of share ``s`` makes
        such a streak with odds ``s ** streak`` (40%, 20 calls: one in 10⁸).
        """
        n = self.policy.streak
        if n is None:
            return False
        if self._streak >= n:
            self._open(now, "dependency", self._streak, self._streak)
            return True
        if self.policy.storm_threshold is not None and -self._streak >= n:
            self._open(now, "handler", -self._streak, -self._streak)
            return True
        return False

    def _probe_result(self, verdict: Verdict, now: float) -> None:
        if verdict in (Verdict.DEPENDENCY, Verdict.HANDLER):
            self._half_fails += 1
            if self._half_fails >= self.policy.probes:
                cause = "dependency" if verdict is Verdict.DEPENDENCY else "handler"
                self._open(now, cause, self._half_fails, self._half_fails)
        else:
            self._probes_left += 1  # proved nothing: let another probe go

    def _rotate(self) -> None:
        self._prev = (self._calls, self._dep, self._handler)
        self._calls = self._dep = self._handler = 0

    def _move(self, after: BreakerState, failures: int, calls: int) -> None:
        before, self.state = self.state, after
        if self.listener is not None:
            cause = self.cause if after is not BreakerState.CLOSED else ""
            self.listener(Transition(before, after, cause, failures, calls))

    def _open(self, now: float, cause: str, failures: int, calls: int) -> None:
        self.cause = cause
        self._streak = 0
        self._opened_at = now
        self._probes_left = 0
        self._move(BreakerState.OPEN, failures, calls)

    def _enter_half_open(self) -> None:
        self._probes_left = self.policy.probes
        self._half_fails = 0
        self._move(BreakerState.HALF_OPEN, 0, 0)

    def _close(self) -> None:
        self._calls = self._dep = self._handler = 0
        self._prev = (0, 0, 0)
        self._move(BreakerState.CLOSED, self._half_fails, self._half_fails + 1)
        self.cause = ""
