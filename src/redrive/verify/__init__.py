"""The read model: where is every message of a stream, for a consumer group?

One answer shared by the conservation audit (``redrive audit``), the demo's
reconciliation, the simulator's accounting and the DLQ canary:

- :mod:`~redrive.verify.places` — the places (unread, pending, retrying, dead, acked) and
  :class:`Snapshot`, one read of them, classified (pure);
- :mod:`~redrive.verify.read` — :func:`read_snapshot`, that read on Redis (paged);
- :mod:`~redrive.verify.conservation` — :func:`audit_stream`: is every entry in one place?
- :mod:`~redrive.verify.reconcile` — :func:`reconcile`: did every produced message end up
  succeeded, dead or pending?

Example::

    from redrive.verify import audit_stream, read_snapshot
    snap = read_snapshot(client, StreamKeys.of("ecommerce:orders", "orders-service"))
"""

from __future__ import annotations

from redrive.verify.conservation import GroupAudit, audit_group, audit_stream, groups_of
from redrive.verify.places import (
    ACKED,
    DEAD,
    GONE,
    PENDING,
    PLACES,
    RETRYING,
    SUCCEEDED,
    UNREAD,
    Snapshot,
)
from redrive.verify.read import read_snapshot
from redrive.verify.reconcile import StreamReport, locate, read_ledger, reconcile

__all__ = [
    "ACKED",
    "DEAD",
    "GONE",
    "PENDING",
    "PLACES",
    "RETRYING",
    "SUCCEEDED",
    "UNREAD",
    "GroupAudit",
    "Snapshot",
    "StreamReport",
    "audit_group",
    "audit_stream",
    "groups_of",
    "locate",
    "read_ledger",
    "read_snapshot",
    "reconcile",
]
