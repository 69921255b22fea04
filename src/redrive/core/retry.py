"""Retry policy and the backoff function (pure).

``compute_backoff`` is the whole schedule: ``base * multiplier**retry`` capped at
``max_delay``, then jittered. With the defaults (base 1 s, multiplier 2, no jitter) the
gaps between attempts are 1 s, 2 s, 4 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from redrive.errors import ConfigError

Jitter = Literal["none", "full", "equal", "decorrelated"]
JITTERS: tuple[str, ...] = get_args(Jitter)


class UniformSource(Protocol):
    """The part of :class:`random.Random` the backoff needs (injected, never global)."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how late a failed message is retried.

    Example::

        RetryPolicy(max_retries=5, base_delay=0.5, max_delay=30, jitter="full")

    ``max_retries`` counts retries after the first attempt (3 → up to 4 attempts).
    ``max_age`` (seconds, optional) dead-letters a message whose first delivery is older.
    """

    max_retries: int = 3
    base_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    jitter: Jitter = "none"
    max_age: float | None = None

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_retries, int)
            or isinstance(self.max_retries, bool)
            or self.max_retries < 0
        ):
            raise ConfigError(f"max_retries={self.max_retries!r}: use an integer >= 0")
        _check_positive("base_delay", self.base_delay, allow_zero=True)
        _check_positive("max_delay", self.max_delay, allow_zero=True)
        if not _is_number(self.multiplier) or self.multiplier < 1:
            raise ConfigError(f"multiplier={self.multiplier!r}: use a number >= 1")
        if self.max_delay < self.base_delay:
            raise ConfigError(
                f"max_delay={self.max_delay!r} is below base_delay={self.base_delay!r}: "
                "raise max_delay or lower base_delay"
            )
        if self.jitter not in JITTERS:
            raise ConfigError(f"jitter={self.jitter!r}: choose one of {', '.join(JITTERS)}")
        if self.max_age is not None:
            _check_positive("max_age", self.max_age, allow_zero=False)

    def delay(self, retry: int, rng: UniformSource, previous: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 = the first retry)."""
        return compute_backoff(
            retry,
            base=self.base_delay,
            multiplier=self.multiplier,
            max_delay=self.max_delay,
            jitter=self.jitter,
            rng=rng,
            previous=previous,
        )


def compute_backoff(
    retry: int,
    *,
    base: float,
    multiplier: float,
    max_delay: float,
    jitter: Jitter,
    rng: UniformSource,
    previous: float | None = None,
) -> float:
    """Delay in seconds before retry ``retry`` (0-based); never above ``max_delay``.

    - ``none``: ``min(max_delay, base * multiplier**retry)``
    - ``full``: uniform in ``[0, d]`` (AWS "full jitter")
    - ``equal``: ``d/2`` plus uniform in ``[0, d/2]``
    - ``decorrelated``: uniform in ``[base, previous * 3]``, capped (AWS "decorrelated")
    """
    if retry < 0:
        raise ConfigError(f"retry={retry}: retry numbers start at 0")
    d = _capped_exponential(retry, base, multiplier, max_delay)
    if jitter == "none":
        return d
    if jitter == "full":
        return min(d, max(0.0, rng.uniform(0.0, d)))
    if jitter == "equal":
        return min(d, d / 2 + max(0.0, rng.uniform(0.0, d / 2)))
    prev = base if previous is None else max(previous, base)
    return min(max_delay, max(base, rng.uniform(base, prev * 3)))


def _capped_exponential(retry: int, base: float, multiplier: float, cap: float) -> float:
    # multiplier**retry overflows to inf for large retry counts; compare in log space.
    if base == 0:
        return 0.0
    if multiplier > 1 and retry * math.log(multiplier) > math.log(cap) - math.log(base) + 1e-12:
        return cap
    try:
        return min(cap, base * multiplier**retry)
    except OverflowError:
        return cap


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_positive(name: str, value: object, *, allow_zero: bool) -> None:
    ok = _is_number(value) and (value >= 0 if allow_zero else value > 0)  # type: ignore[operator]
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r}: use a finite number of seconds {bound}")
