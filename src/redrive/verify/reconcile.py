"""Reconciliation: where did every produced message end up? (the demo's report)

Given the ids a producer got back and a ledger (a hash: origin id → times handled), each
produced message is *succeeded* (in the ledger), *dead* (a dead letter of this group),
*pending* — not settled yet: unread, in the pending list, or retrying
(:mod:`redrive.verify.places`) — or else **lost**, the number that must be 0. A message
counted more than once (a ledger count above 1, or both succeeded and dead) is a
*duplicate*: allowed by at-least-once delivery after a crash, unexpected in a clean run.

Example::

    report = reconcile(client, "ecommerce:orders", "orders-service", produced_ids, ledger)
    assert report.lost == 0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis

from redrive.core.text import text
from redrive.store import keys
from redrive.verify.places import ACKED, GONE, PENDING, RETRYING, UNREAD, Snapshot
from redrive.verify.read import read_snapshot

PAGE = 1000
SAMPLE = 10


@dataclass(frozen=True, slots=True)
class StreamReport:
    """The reconciliation of one (stream, group): counts by outcome, and what is lost."""

    stream: str
    group: str
    produced: int
    succeeded: int
    retried: int
    dead: dict[str, int]
    pending: int
    lost: int
    duplicates: int
    lost_sample: tuple[str, ...] = ()

    @property
    def dead_total(self) -> int:
        """Dead letters of produced messages, all reasons together."""
        return sum(self.dead.values())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``dead`` by reason, ``lost_sample`` as a list)."""
        out = asdict(self)
        out["dead_total"] = self.dead_total
        out["lost_sample"] = list(self.lost_sample)
        return out


def reconcile(
    client: redis.Redis,
    stream: str,
    group: str,
    produced: Sequence[str],
    ledger: Mapping[str, int],
) -> StreamReport:
    """Account for every id in ``produced`` (see the module docstring)."""
    k = keys.StreamKeys.of(stream, group)
    snap = read_snapshot(client, k)
    reasons: Counter[str] = Counter()
    duplicates = lost = 0
    lost_sample: list[str] = []
    for entry_id in produced:
        outcomes = ledger.get(entry_id, 0) + len(snap.dead.get(entry_id, ()))
        duplicates += max(0, outcomes - 1)
        if entry_id in snap.dead:
            reasons[snap.reasons(entry_id)[0]] += 1
        elif not outcomes and not snap.unsettled(entry_id):
            lost += 1
            if len(lost_sample) < SAMPLE:
                lost_sample.append(entry_id)
    return StreamReport(
        stream=stream,
        group=group,
        produced=len(produced),
        succeeded=sum(1 for i in produced if ledger.get(i, 0) and i not in snap.dead),
        retried=int(client.hget(k.stats, "retried") or 0),
        dead=dict(sorted(reasons.items())),
        pending=len({i for i in produced if snap.unsettled(i)}),
        lost=lost,
        duplicates=duplicates,
        lost_sample=tuple(lost_sample),
    )


def read_ledger(client: redis.Redis, key: str) -> dict[str, int]:
    """A ledger hash as ``{origin id: times handled}``."""
    return {text(f): int(v) for f, v in client.hscan_iter(key, count=PAGE)}


def locate(client: redis.Redis, k: keys.StreamKeys, ids: Sequence[str]) -> dict[str, str]:
    """Where each of ``ids`` (source entries) is now, for the report of a lost message.

    ``pending`` (in the group's pending list), ``retrying`` (in the schedule or the retry
    stream), ``unread`` (after the group's last delivered id), ``acked`` (still in the
    stream, but acknowledged with no outcome recorded: the trace of a loss) or ``gone``
    (no longer in the stream: trimmed or deleted).
    """
    snap = read_snapshot(client, k)
    pipe = client.pipeline(transaction=False)
    for entry_id in ids:
        pipe.xrange(k.stream, min=entry_id, max=entry_id, count=1)
    present = pipe.execute() if ids else []
    return {
        entry_id: _where(snap, entry_id, bool(found))
        for entry_id, found in zip(ids, present, strict=True)
    }


def _where(snap: Snapshot, entry_id: str, present: bool) -> str:
    # Pending before retrying: a lost message is looked for where it was last handed out.
    if entry_id in snap.pending:
        return PENDING
    if entry_id in snap.retrying:
        return RETRYING
    if not snap.delivered(entry_id):
        return UNREAD
    return ACKED if present else GONE
