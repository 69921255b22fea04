"""DLQ retention: ``max_len`` and ``max_age`` per dead-letter stream, applied by workers.

Every worker runs :func:`apply_retention` in a background task (never on the message
path). Each pass evicts at most ``TRIM_LIMIT`` entries, so a DLQ with a large backlog to
evict never blocks Redis for long; the next pass continues.

Warnings come *before* evictions. Entries within their last tenth of ``max_age`` — and
never less than :data:`WARN_AHEAD` seconds, so a short ``max_age`` is warned about at
least a few passes ahead — are counted as ``expiring`` in ``redrive:dlq-retention:{S}``
and logged, so an operator can ``redrive dlq export`` them first; and a pass logs what it
is about to evict before it deletes anything. Evictions are counted there (``evicted``)
and recorded in the audit trail.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from redrive.errors import ConfigError
from redrive.store import keys
from redrive.store.keys import AUDIT_MAXLEN

log = logging.getLogger("redrive.dlq.retention")  # the operator's name for it

TRIM_LIMIT = 1000
INTERVAL = 10.0
WARN_FRACTION = 0.1  # warn about entries within the last tenth of their life
#: ... but at least this many seconds ahead (three passes), however short max_age is.
WARN_AHEAD = 3 * INTERVAL


@dataclass(frozen=True, slots=True)
class Retention:
    """How long (seconds) and how many dead letters ``dlq:{S}`` keeps; ``None``: no limit.

    Example::

        Retention(max_len=100_000, max_age=7 * 86400)
    """

    max_len: int | None = None
    max_age: float | None = None

    def __post_init__(self) -> None:
        if self.max_len is not None and self.max_len < 1:
            raise ConfigError(f"dlq max_len={self.max_len!r}: use an integer >= 1")
        if self.max_age is not None and not 0 < self.max_age < float("inf"):
            raise ConfigError(f"dlq max_age={self.max_age!r}: use a number of seconds > 0")

    @property
    def active(self) -> bool:
        """True when there is anything to enforce."""
        return self.max_len is not None or self.max_age is not None


@dataclass(frozen=True, slots=True)
class RetentionPass:
    """What one pass did: entries evicted, and entries that will age out soon."""

    evicted: int
    expiring: int


async def apply_retention(
    client: Redis, stream: str, policy: Retention, *, now_ms: int | None = None, by: str = ""
) -> RetentionPass:
    """Trim ``dlq:{stream}`` to ``policy``, warning about what ages out (and is evicted)
    before anything is deleted."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    key = keys.dlq(stream)
    evicted = expiring = 0
    if policy.max_age is not None:
        age_ms = int(policy.max_age * 1000)
        ahead_ms = warn_ahead_ms(policy.max_age)
        expiring = len(
            await _ids(client, key, f"{now - age_ms}-0", f"({now - age_ms + ahead_ms}-0")
        )
        _warn_expiring(stream, expiring, ahead_ms)
        ids = await _ids(client, key, "-", f"({now - age_ms}-0")
        evicted += await _evict(client, stream, key, ids, f"older than {policy.max_age:g}s")
    if policy.max_len is not None:
        excess = int(await client.xlen(key)) - policy.max_len
        if excess > 0:
            ids = await _ids(client, key, "-", "+", min(excess, TRIM_LIMIT))
            evicted += await _evict(client, stream, key, ids, f"over max_len {policy.max_len}")
    await _publish(client, stream, policy, evicted, expiring, now, by)
    return RetentionPass(evicted, expiring)


def warn_ahead_ms(max_age: float) -> int:
    """How long before its eviction a dead letter counts as ``expiring`` (ms)."""
    return int(min(max_age, max(max_age * WARN_FRACTION, WARN_AHEAD)) * 1000)


def _warn_expiring(stream: str, expiring: int, ahead_ms: int) -> None:
    if expiring:
        log.warning("%d dead letters of %s will age out within %.0fs: export them to keep them",
                    expiring, stream, ahead_ms / 1000,
                    extra={"stream": stream, "expiring": expiring})  # fmt: skip


async def _ids(client: Redis, key: str, low: str, high: str, count: int = TRIM_LIMIT) -> list[Any]:
    reply = await _command(client, "XRANGE", key, low, high, "COUNT", count)
    return [entry_id for entry_id, _ in reply]


async def _evict(client: Redis, stream: str, key: str, ids: list[Any], why: str) -> int:
    # XRANGE + XDEL of at most TRIM_LIMIT ids, not XTRIM: exact (XTRIM "~" keeps whole
    # macro nodes of 100 entries, so a small DLQ would never age out) and bounded per
    # pass (an exact XTRIM of a large backlog would block Redis). An id replayed or purged
    # in between is simply not counted. The warning is logged before the delete.
    if not ids:
        return 0
    log.warning("retention evicts %d dead letters of %s (%s)", len(ids), stream, why,
                extra={"stream": stream, "evicting": len(ids)})  # fmt: skip
    return int(await client.xdel(key, *ids))


async def _command(client: Redis, *args: Any) -> Any:
    # Raw XRANGE: the replies are only counted or their ids taken, never parsed.
    return await cast(Any, client).execute_command(*args)


async def _publish(
    client: Redis, stream: str, policy: Retention, evicted: int, expiring: int, now: int, by: str
) -> None:
    gauges: dict[str, str | int | float] = {"expiring": expiring, "last-run-ms": now}
    gauges["max-len"] = policy.max_len or 0
    gauges["max-age"] = policy.max_age or 0
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.dlq_retention(stream), mapping=gauges)  # type: ignore[arg-type]
    if evicted:
        pipe.hincrby(keys.dlq_retention(stream), "evicted", evicted)
        record = {"action": "retention", "by": by or "worker", "stream": stream,
                  "deleted": evicted, "ts-ms": now}  # fmt: skip
        pipe.xadd(keys.audit_trail(stream), record, maxlen=AUDIT_MAXLEN, approximate=True)  # type: ignore[arg-type]
    await pipe.execute()
