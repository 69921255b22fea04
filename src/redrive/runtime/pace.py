"""The idle cost of a worker process: bounded, whatever its number of handlers.

Each handler has periodic work that talks to Redis even when no message arrives: its
blocked read returns empty after BLOCK, its metrics entry doubles as a heartbeat, its
reclaim pass looks for entries of crashed consumers, its retry schedule is checked for
other workers' retries (``scheduler.CHECKS_PER_SECOND``). One handler keeps the configured
intervals; with many, each interval is stretched so that the process does at most the
number per second below of each kind (a blocked read returns as soon as a message
arrives, so a longer BLOCK costs no latency). With the defaults an idle process sends
fewer than 50 commands per second (docs/configuration.md, "Idle cost").
"""

from __future__ import annotations

from dataclasses import dataclass

from redrive.runtime.settings import HandlerSpec, WorkerOptions

#: Blocked reads (XREADGROUP over a handler's two streams) ending empty, per second.
READS_PER_SECOND = 8.0
#: Metrics entries written while nothing changed (a heartbeat: XADD, rarely EXPIRE).
HEARTBEATS_PER_SECOND = 4.0
#: Reclaim passes (XAUTOCLAIM on both streams of a handler).
RECLAIMS_PER_SECOND = 4.0


def spread(interval: float, handlers: int, per_second: float) -> float:
    """``interval`` (seconds), stretched so ``handlers`` do it at most ``per_second``."""
    return max(interval, handlers / per_second)


@dataclass(frozen=True, slots=True)
class IdleIntervals:
    """The idle intervals of one handler among ``handlers`` in its process."""

    block_ms: int  # XREADGROUP BLOCK
    heartbeat: float  # seconds between metrics entries while nothing changes
    reclaim: float  # seconds between reclaim passes

    @classmethod
    def of(cls, opts: WorkerOptions, spec: HandlerSpec, handlers: int) -> IdleIntervals:
        reclaim = opts.reclaim_interval or spec.visibility_timeout / 4
        return cls(
            block_ms=round(1000 * spread(opts.block_ms / 1000, handlers, READS_PER_SECOND)),
            heartbeat=spread(opts.stats_interval, handlers, HEARTBEATS_PER_SECOND),
            reclaim=spread(reclaim, handlers, RECLAIMS_PER_SECOND),
        )
