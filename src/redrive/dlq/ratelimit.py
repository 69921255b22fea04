"""A token bucket for ``--rate N/s`` (clock and sleep injected, so tests need no waiting)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from redrive.errors import ConfigError


class TokenBucket:
    """Allow ``rate`` events per second on average, at most ``burst`` at once.

    The bucket starts with one token: the first entry moves at once, and ``n`` entries
    take at least ``(n - 1) / rate`` seconds, so ``--rate 100`` really means 100/s even
    for a short replay.

    Example::

        bucket = TokenBucket(100)
        for entry in entries:
            await bucket.take()
            await move(entry)
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not rate > 0 or rate == float("inf"):
            raise ConfigError(f"rate={rate!r}: use a number of entries per second > 0")
        if burst < 1:
            raise ConfigError(f"burst={burst!r}: use a number >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self.tokens = 1.0
        self.stamp = clock()

    async def take(self) -> None:
        """Wait until a token is available, then take it."""
        while True:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            # A tolerance, as refilling by exactly the deficit can land a hair below 1.0
            # in floating point and would then spin on ever-smaller sleeps.
            if self.tokens >= 1 - 1e-9:
                self.tokens = max(0.0, self.tokens - 1)
                return
            await self.sleep((1 - self.tokens) / self.rate)


def parse_rate(text: str) -> float:
    """``100``, ``100/s`` or ``6000/m`` → entries per second."""
    value, _, unit = text.strip().partition("/")
    per = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}.get(unit.strip())
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if per is None or not 0 < rate < float("inf"):
        raise ConfigError(f"--rate {text!r}: use entries per second, e.g. 100 or 100/s")
    return rate / per
