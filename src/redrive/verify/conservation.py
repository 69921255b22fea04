"""Conservation of one stream, right now: where is every entry of ``S`` for a group?

Every entry of a source stream, seen from a consumer group, is in exactly one place —
acked, pending, unread, retrying or dead (:mod:`redrive.verify.places`).

Two findings break conservation and make the audit fail:

- an entry *double-booked* in more than one of dead / retrying / pending (a move that was
  not atomic, or a duplicate the fence should have stopped);
- a *trimmed* pending entry: in the pending list, but its payload is gone from the stream
  (MAXLEN or XDEL while it was being handled) — that message is lost unless recorded.

Example::

    audits = audit_stream(client, "ecommerce:orders")
    assert all(a.ok for a in audits)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from redrive.core.ids import sort_ids
from redrive.core.text import text
from redrive.errors import ConfigError
from redrive.store import readers
from redrive.store.key_types import WrongTypeError, wrong_type
from redrive.store.keys import StreamKeys
from redrive.verify.places import PLACES
from redrive.verify.read import read_snapshot

SAMPLE = 20


@dataclass(slots=True)
class GroupAudit:
    """The audit of one (stream, group); ``ok`` when conservation holds."""

    stream: str
    group: str
    entries: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    double_booked: list[str] = field(default_factory=list)
    trimmed_pending: list[str] = field(default_factory=list)
    trimmed_retry_pending: list[str] = field(default_factory=list)
    outcomes_of_trimmed_entries: int = 0

    @property
    def ok(self) -> bool:
        """Nothing double-booked and no pending entry without its payload."""
        return not (self.double_booked or self.trimmed_pending or self.trimmed_retry_pending)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (id lists cut to a sample, with full counts)."""
        return {
            "stream": self.stream,
            "group": self.group,
            "ok": self.ok,
            "entries": self.entries,
            **{k: self.counts.get(k, 0) for k in PLACES},
            "double_booked": len(self.double_booked),
            "double_booked_sample": self.double_booked[:SAMPLE],
            "trimmed_pending": len(self.trimmed_pending),
            "trimmed_pending_sample": self.trimmed_pending[:SAMPLE],
            "trimmed_retry_pending": len(self.trimmed_retry_pending),
            "outcomes_of_trimmed_entries": self.outcomes_of_trimmed_entries,
        }


def groups_of(client: redis.Redis, stream: str) -> list[str]:
    """Names of the consumer groups of ``stream`` (none if it does not exist)."""
    return readers.group_names(client, stream)


def audit_stream(client: redis.Redis, stream: str, group: str | None = None) -> list[GroupAudit]:
    """Audit ``stream`` for ``group``, or for every group it has.

    Raises :class:`~redrive.errors.ConfigError` when ``group`` is not a group of
    ``stream`` (an audit of a group that does not exist would count every entry unread),
    and :class:`~redrive.dlq.WrongTypeError` when one of the keys it reads holds another
    type (``dlq:{S}`` a string, say): what is in it could not be counted.
    """
    _check_types(client, [(stream, "stream")])
    names = groups_of(client, stream)
    if group is None:
        return [audit_group(client, StreamKeys.of(stream, name)) for name in names]
    if group not in names:
        if not client.exists(stream):
            raise ConfigError(f"stream {stream!r} does not exist: check the name (-g {group})")
        known = ", ".join(names) or "none"
        raise ConfigError(
            f"stream {stream!r} has no consumer group {group!r} (its groups: {known})"
        )
    return [audit_group(client, StreamKeys.of(stream, group))]


def _check_types(client: redis.Redis, wanted: list[tuple[str, str]]) -> None:
    pipe = client.pipeline(transaction=False)
    for name, _ in wanted:
        pipe.type(name)
    for (name, expected), kind in zip(wanted, pipe.execute(), strict=True):
        if text(kind) not in (expected, "none"):
            outcome = "the audit cannot count what it holds"
            raise WrongTypeError(wrong_type(name, text(kind), outcome, expected))


def audit_group(client: redis.Redis, k: StreamKeys) -> GroupAudit:
    """Audit one (stream, group); see the module docstring."""
    _check_types(client, [(k.retry, "stream"), (k.due, "zset"), (k.dlq, "stream")])
    out = GroupAudit(k.stream, k.group)
    ids = [text(entry_id) for entry_id, _ in readers.entries(client, k.stream)]
    present = set(ids)
    out.entries = len(ids)
    snap = read_snapshot(client, k)
    for entry_id in ids:
        if len(snap.places(entry_id)) > 1:
            out.double_booked.append(entry_id)
        out.counts[snap.place(entry_id)] += 1
    out.trimmed_pending = sort_ids(snap.pending - present)
    out.trimmed_retry_pending = sort_ids(snap.retry_pending - snap.retry_ids)
    out.outcomes_of_trimmed_entries = len((snap.dead.keys() | snap.retrying) - present)
    return out
