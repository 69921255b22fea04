"""A circuit breaker over transient failures (pure; the clock is passed in).

Closed: outcomes are counted over the last ``window`` to ``2 * window`` calls. When at
least ``min_calls`` are counted and the transient-failure ratio reaches ``threshold``, the
breaker opens: the consumer stops reading (messages wait in the stream instead of burning
their retries). After ``open_seconds`` it is half-open: ``probes`` messages may run; one
success closes it, a transient failure opens it again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from redrive.errors import ConfigError


class BreakerState(StrEnum):
    """States of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a handler's circuit breaker opens and how it probes.

    Example::

        BreakerPolicy(threshold=0.5, window=50, min_calls=20, open_seconds=10)
    """

    threshold: float = 0.5
    window: int = 50
    min_calls: int = 20
    open_seconds: float = 5.0
    probes: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold={self.threshold!r}: use a ratio in (0, 1]")
        if self.window < 1 or self.min_calls < 1 or self.min_calls > self.window:
            raise ConfigError(
                f"window={self.window}, min_calls={self.min_calls}: need 1 <= min_calls <= window"
            )
        if not (isinstance(self.open_seconds, int | float) and 0 < self.open_seconds < math.inf):
            raise ConfigError(f"open_seconds={self.open_seconds!r}: use a finite number > 0")
        if self.probes < 1:
            raise ConfigError(f"probes={self.probes!r}: use an integer >= 1")


class CircuitBreaker:
    """State machine of one handler's breaker. Times are seconds on a monotonic clock.

    Outcomes are counted in two buckets of ``window`` calls (the current and the previous
    one), so the ratio covers the last ``window`` to ``2 * window`` outcomes and a success
    costs one increment on the hot path.
    """

    __slots__ = (
        "_calls",
        "_fails",
        "_opened_at",
        "_prev_calls",
        "_prev_fails",
        "_probes_left",
        "policy",
        "state",
    )

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = BreakerState.CLOSED
        self._calls = self._fails = self._prev_calls = self._prev_fails = 0
        self._opened_at = 0.0
        self._probes_left = 0

    def success(self) -> None:
        """Record a success (closes a half-open breaker)."""
        if self.state is not BreakerState.CLOSED:
            if self.state is BreakerState.HALF_OPEN:
                self._close()
            return
        self._calls += 1
        if self._calls >= self.policy.window:
            self._rotate()

    def failure(self, transient: bool, now: float) -> None:
        """Record a failure; only transient ones count towards opening."""
        if not transient:
            self.success()  # the dependency answered: for the breaker that is health
            return
        if self.state is BreakerState.HALF_OPEN:
            self._open(now)  # the probe failed
            return
        if self.state is BreakerState.OPEN:
            return  # a late failure of work started before opening: keep the timer
        self._calls += 1
        self._fails += 1
        calls = self._calls + self._prev_calls
        fails = self._fails + self._prev_fails
        if calls >= self.policy.min_calls and fails / calls >= self.policy.threshold:
            self._open(now)
        elif self._calls >= self.policy.window:
            self._rotate()

    def record(self, transient_failure: bool, now: float) -> None:
        """Record one outcome (``True`` = a transient failure)."""
        if transient_failure:
            self.failure(True, now)
        else:
            self.success()

    def allowance(self, now: float) -> int | None:
        """How many messages may be read now: ``None`` = no limit, ``0`` = none."""
        if self.state is BreakerState.OPEN:
            if now - self._opened_at < self.policy.open_seconds:
                return 0
            self.state = BreakerState.HALF_OPEN
            self._probes_left = self.policy.probes
        if self.state is BreakerState.HALF_OPEN:
            return self._probes_left
        return None

    def take_probe(self) -> None:
        """Count one message read while half-open."""
        if self.state is BreakerState.HALF_OPEN and self._probes_left > 0:
            self._probes_left -= 1

    def wait(self, now: float) -> float | None:
        """Seconds until the next probe while open or half-open, else ``None``."""
        if self.state is BreakerState.CLOSED:
            return None
        return max(0.0, self.policy.open_seconds - (now - self._opened_at))

    def _rotate(self) -> None:
        self._prev_calls, self._prev_fails = self._calls, self._fails
        self._calls = self._fails = 0

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = now
        self._probes_left = 0

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self._calls = self._fails = self._prev_calls = self._prev_fails = 0
