"""Per-consumer counters, published to Redis as per-group totals (HINCRBY, cheap).

The counters are plain integer attributes so the hot path pays one attribute increment.
"""

from __future__ import annotations

from collections import Counter

from redis.asyncio import Redis

FIELDS = (
    "received",
    "succeeded",
    "failed",
    "retried",
    "dead",
    "fenced",
    "stale_acks",
    "reclaimed",
    "trimmed",
    "breaker_parked",
)


class Stats:
    """Counters of one consumer; ``dead_by_reason`` splits ``dead``."""

    __slots__ = (*FIELDS, "_published", "dead_by_reason", "failed_by_class")

    def __init__(self) -> None:
        self.received = 0
        self.succeeded = 0
        self.failed = 0
        self.retried = 0
        self.dead = 0
        self.fenced = 0
        self.stale_acks = 0
        self.reclaimed = 0
        self.trimmed = 0
        self.breaker_parked = 0
        self.dead_by_reason: Counter[str] = Counter()
        self.failed_by_class: Counter[str] = Counter()
        self._published: dict[str, int] = {}

    def snapshot(self) -> dict[str, int]:
        """All counters as a flat dict (``dead:<reason>``, ``failed:<class>`` included)."""
        out = {name: int(getattr(self, name)) for name in FIELDS}
        out.update({f"dead:{k}": v for k, v in self.dead_by_reason.items()})
        out.update({f"failed:{k}": v for k, v in self.failed_by_class.items()})
        return out

    async def publish(self, client: Redis, key: str) -> None:
        """Add what changed since the last publish to the group's stats hash."""
        now = self.snapshot()
        delta = {k: v - self._published.get(k, 0) for k, v in now.items()}
        delta = {k: v for k, v in delta.items() if v}
        if not delta:
            return
        pipe = client.pipeline(transaction=False)
        for name, value in delta.items():
            pipe.hincrby(key, name, value)
        await pipe.execute()
        self._published = now
