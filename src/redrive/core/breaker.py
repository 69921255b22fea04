"""A circuit breaker that judges the dependency and the deploy, not the retry stream (pure).

What it counts (docs/concepts.md, "Circuit breaker"):

- Only *fresh* outcomes (first deliveries from the source stream) enter the trip ratio.
  Retries are a selection of messages that already failed: with 3% of keys failing, the
  retry stream is nearly 100% failures, so counting it would open the breaker although
  the dependency serves 97% of the traffic. Explicit ``Retry`` is the handler's own
  choice and is not counted at all.
- Two ratios over the last ``window`` to ``2 * window`` fresh outcomes, once at least
  ``min_calls`` are counted: transient failures ≥ ``threshold`` (the dependency is down)
  and, with ``storm_threshold`` set, *handler failures* ≥ ``storm_threshold`` (permanent
  errors that are not bad input: a ``TypeError`` on every message is a bad deploy, not
  bad data). Either opens the breaker; :attr:`CircuitBreaker.cause` says which.
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
    """

    threshold: float = 0.5
    window: int = 50
    min_calls: int = 20
    open_seconds: float = 5.0
    probes: int = 3
    storm_threshold: float | None = 0.8

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


class CircuitBreaker:
    """State machine of one handler's breaker. Times are seconds on a monotonic clock.

    Fresh outcomes are counted in two buckets of ``window`` calls (the current and the
    previous one), so a ratio covers the last ``window`` to ``2 * window`` of them and a
    success costs one increment on the hot path.
    """

    __slots__ = ("_calls", "_dep", "_half_fails", "_handler", "_opened_at", "_prev",
                 "_probes_left", "cause", "listener", "policy", "state")  # fmt: skip

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

    def success(self, fresh: bool = True) -> None:
        """Record a success (closes a half-open breaker, whatever the message)."""
        if self.state is not BreakerState.CLOSED:
            if self.state is BreakerState.HALF_OPEN:
                self._close()
            return
        if fresh:
            self._calls += 1
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
        calls = self._calls + self._prev[0]
        if calls >= self.policy.min_calls:
            dep = self._dep + self._prev[1]
            handler = self._handler + self._prev[2]
            storm = self.policy.storm_threshold
            if dep / calls >= self.policy.threshold:
                self._open(now, "dependency", dep, calls)
                return
            if storm is not None and handler / calls >= storm:
                self._open(now, "handler", handler, calls)
                return
        if self._calls >= self.policy.window:
            self._rotate()

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
