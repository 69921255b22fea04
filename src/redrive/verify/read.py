"""One read of every place a (stream, group)'s messages can be (sync, paged).

The places are read in the order messages move through them — the group's last
delivered id, its pending list, the retry schedule, the retry stream, the DLQ — so a
message that moves on while the read walks is mostly seen twice (a double booking the
audit reports) rather than missed. The read is a walk, not a snapshot: a retry that fails
again goes back from the retry stream to the schedule, against that order, and an
outcome recorded outside these keys (a ledger) is read by the caller at another moment.
Exact numbers want a quiet stream; the canary, which must not miss a retry in flight,
reads the schedule and the retry stream in one MULTI instead.
"""

from __future__ import annotations

import redis

from redrive.core.text import text
from redrive.store import readers
from redrive.store.keys import StreamKeys
from redrive.store.schedule import scheduled
from redrive.verify.places import Snapshot, dead_by_origin, retrying_origins


def read_snapshot(client: redis.Redis, k: StreamKeys) -> Snapshot:
    """Read where every message of ``k.stream`` is for ``k.group`` (see the module docstring).

    Example::

        snap = read_snapshot(client, StreamKeys.of("ecommerce:orders", "orders-service"))
        snap.place("1700000000000-0")  # "acked", "pending", "unread", "retrying", "dead"
    """
    last = readers.last_delivered(client, k.stream, k.group)
    pel = readers.pending_ids(client, k.stream, k.group)
    schedule = list(scheduled(client, k.due))
    # The retry pending list before the retry stream, as the audit always read them: an
    # entry that is pending there and missing from the stream was trimmed.
    retry_pending = readers.pending_ids(client, k.retry, k.group)
    retry_ids: set[str] = set()
    retries = []
    for entry_id, fields in readers.entries(client, k.retry):
        retry_ids.add(text(entry_id))
        retries.append(fields)
    dead_letters = (fields for _, fields in readers.entries(client, k.dlq))
    dead = dead_by_origin(dead_letters, k.stream, k.group)
    return Snapshot(
        stream=k.stream,
        group=k.group,
        last_delivered=last,
        pending=frozenset(pel),
        retrying=frozenset(retrying_origins(retries, schedule)),
        dead=dead,
        retry_ids=frozenset(retry_ids),
        retry_pending=frozenset(retry_pending),
    )
