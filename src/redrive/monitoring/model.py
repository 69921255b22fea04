"""Values a collection produces: one snapshot of every stream, group and consumer.

Unknown is ``None``, never 0: a group's lag is unknown on Redis 6.2 (``XINFO GROUPS`` has
no ``lag``) and on Redis 7 in some states (``lag`` is nil); an empty retry schedule has no
next due time. Times are milliseconds (``*_ms``) or seconds (``seconds``), as named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What the workers of one group published over the last ``seconds``.

    ``totals`` sums every counter delta of the window (``succeeded``, ``failed``,
    ``dead:<reason>``…); ``runs`` and ``failures`` are per-second series, oldest first;
    ``breakers`` maps each consumer heard from in the window to its latest breaker state.
    """

    seconds: float
    totals: dict[str, int] = field(default_factory=dict)
    runs: tuple[int, ...] = ()
    failures: tuple[int, ...] = ()
    breakers: dict[str, str] = field(default_factory=dict)

    def rate(self, name: str) -> float:
        """Counter ``name`` per second over the window."""
        return self.totals.get(name, 0) / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_rate(self) -> float | None:
        """Failed handler runs / all handler runs in the window; ``None`` if none ran."""
        failed = self.totals.get("failed", 0)
        runs = self.totals.get("succeeded", 0) + failed
        return failed / runs if runs else None

    @property
    def handler_runs(self) -> int:
        """Handler runs (succeeded + failed) in the window."""
        return self.totals.get("succeeded", 0) + self.totals.get("failed", 0)


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    """One consumer of a group, from ``XINFO CONSUMERS`` on the stream and its retry stream.

    ``dead``: idle past the collector's threshold with entries pending — a crashed worker
    whose entries wait for reclaim. ``breaker`` is its latest published breaker state
    (``None`` if it published nothing in the window).
    """

    name: str
    pending: int
    idle_ms: int
    dead: bool
    breaker: str | None = None


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """One consumer group of a stream (with its retry keys and counters)."""

    stream: str
    group: str
    lag: int | None
    pending: int
    oldest_pending_idle_ms: int | None
    consumers: tuple[ConsumerInfo, ...]
    retry_scheduled: int
    retry_next_due_ms: int | None
    retry_ready: int
    counters: dict[str, int]
    window: WindowStats
    #: Idempotency keys marked done (``redrive:idem:{S}:<group>:done``; 0 without).
    idempotency_keys: int = 0

    @property
    def dead_consumers(self) -> tuple[ConsumerInfo, ...]:
        """Consumers idle past the threshold with entries pending."""
        return tuple(c for c in self.consumers if c.dead)

    @property
    def open_breakers(self) -> tuple[str, ...]:
        """Consumers whose latest breaker state is open or half-open."""
        return tuple(
            name for name, state in sorted(self.window.breakers.items()) if state in OPEN_STATES
        )

    @property
    def retry_backlog(self) -> int:
        """Retries waiting for their time plus those due but not yet settled."""
        return self.retry_scheduled + self.retry_ready


OPEN_STATES = ("open", "half_open")


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """One source stream: its length, dead-letter stream and groups.

    ``dlq_growth_per_minute`` is the rate at which its groups' workers dead-lettered
    messages over the window (replays and purges do not count). ``problem`` says why an
    entry of the stream index could not be read (a key of another type, a key the ACL
    user may not read); such a stream has no numbers, and the others are unaffected.
    """

    stream: str
    length: int | None
    dlq_length: int
    dlq_growth_per_minute: float
    groups: tuple[GroupSnapshot, ...]
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every indexed stream at ``taken_ms`` (ms since the epoch)."""

    taken_ms: int
    window_seconds: float
    streams: tuple[StreamSnapshot, ...]

    def problems(self) -> list[str]:
        """Why index entries could not be read, one line each."""
        return [s.problem for s in self.streams if s.problem is not None]

    def groups(self) -> list[GroupSnapshot]:
        """Every group of every stream, in order."""
        return [g for s in self.streams for g in s.groups]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``None`` stays ``null``: unknown, not zero)."""
        out = asdict(self)
        for stream_json, stream in zip(out["streams"], self.streams, strict=True):
            for group_json, group in zip(stream_json["groups"], stream.groups, strict=True):
                group_json["error_rate"] = group.window.error_rate
                group_json["open_breakers"] = list(group.open_breakers)
                group_json["dead_consumers"] = [c.name for c in group.dead_consumers]
        return out
