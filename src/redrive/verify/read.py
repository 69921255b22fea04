"""One read of every place a (stream, group)'s messages can be (sync, paged).

The places are read in the order messages move through them — the group's last
delivered id, its pending list, the retry schedule, the retry stream, the DLQ — so a
message that moves while the read walks on is seen twice rather than missed: a live
read may report a double booking, it never invents a loss.
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
