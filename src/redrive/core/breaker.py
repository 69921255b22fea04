"""A circuit breaker over transient failures (pure; the clock is passed in).

Closed: every outcome is recorded in a window of the last ``window`` outcomes. When at
least ``min_calls`` are recorded and the transient-failure ratio reaches ``threshold``, the
breaker opens: the consumer stops reading (messages wait in the stream instead of burning
their retries). After ``open_seconds`` it is half-open: ``probes`` messages may run; one
success closes it, a transient failure opens it again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from redrive.errors import ConfigError


class BreakerState(str, Enum):
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
                f"window={self.window}, min_calls={self.min_calls}: "
                "need 1 <= min_calls <= window"
            )
        if self.open_seconds <= 0:
            raise ConfigError(f"open_seconds={self.open_seconds!r}: use a number > 0")
        if self.probes < 1:
            raise ConfigError(f"probes={self.probes!r}: use an integer >= 1")


class CircuitBreaker:
    """State machine of one handler's breaker. Times are seconds on a monotonic clock."""

    __slots__ = ("_failures", "_opened_at", "_outcomes", "_probes_left", "policy", "state")

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = BreakerState.CLOSED
        self._outcomes: deque[bool] = deque(maxlen=policy.window)
        self._failures = 0
        self._opened_at = 0.0
        self._probes_left = 0

    def record(self, transient_failure: bool, now: float) -> None:
        """Record one outcome (``True`` = a transient failure)."""
        if self.state is not BreakerState.CLOSED:
            if transient_failure:
                self._open(now)
            elif self.state is BreakerState.HALF_OPEN:
                self._close()
            return
        outcomes = self._outcomes
        if len(outcomes) == outcomes.maxlen and outcomes[0]:
            self._failures -= 1
        outcomes.append(transient_failure)
        self._failures += transient_failure
        n = len(outcomes)
        if n >= self.policy.min_calls and self._failures >= self.policy.threshold * n:
            self._open(now)

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
        """Seconds until the next probe while open, else ``None``."""
        if self.state is BreakerState.CLOSED:
            return None
        return max(0.0, self.policy.open_seconds - (now - self._opened_at))

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = now
        self._probes_left = 0

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self._outcomes.clear()
        self._failures = 0
