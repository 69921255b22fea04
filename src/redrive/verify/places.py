"""Where a message can be, and how one read of them is classified (pure).

A message produced to ``S`` and read by group ``g`` is, at any instant, in one place,
because every move between places is one atomic Lua call:

- ``unread``: after the group's last delivered id;
- ``pending``: delivered, in the group's pending list, no outcome yet;
- ``retrying``: a retry of it waits in ``retry:{S}:g:due`` or in ``retry:{S}:g``;
- ``dead``: a dead letter in ``dlq:{S}`` that ``g`` wrote names it as its origin;
- ``acked``: acknowledged with none of the above — handled, or lost if nothing recorded
  an outcome (only a ledger, ``succeeded``, tells the two apart).

:class:`Snapshot` holds one read of the places (see :func:`redrive.verify.read_snapshot`);
the functions below classify raw entries, so the async canary shares them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from redrive.core import fields as f
from redrive.core.ids import is_after
from redrive.core.text import text

Fields = Mapping[bytes, bytes]

UNREAD, PENDING, RETRYING, DEAD, ACKED = "unread", "pending", "retrying", "dead", "acked"
GONE, SUCCEEDED = "gone", "succeeded"  # not in the stream any more; in a ledger
#: The places of an entry still in the stream, in the order the audit reports them.
PLACES = (ACKED, PENDING, UNREAD, RETRYING, DEAD)


def origin_of(fields: Fields) -> str:
    """The source entry id a retry entry or a dead letter stands for (``""``: none)."""
    return text(fields.get(f.ORIGIN_ID.key, b""))


def written_by(fields: Fields, stream: str | None, group: str | None) -> bool:
    """Whether a dead letter (or retry) is of ``stream`` and by ``group``; ``None``: any.

    Groups of one stream share ``dlq:{S}``: each group's outcomes are its own.
    """
    if stream is not None and text(fields.get(f.ORIGIN_STREAM.key, b"")) != stream:
        return False
    return group is None or text(fields.get(f.GROUP.key, b"")) == group


def retrying_origins(retries: Iterable[Fields], scheduled: Iterable[Fields]) -> set[str]:
    """Origin ids of the retry stream's entries and of the schedule's members."""
    out = {origin_of(fields) for fields in retries}
    out.update(origin_of(fields) for fields in scheduled)
    out.discard("")
    return out


def dead_by_origin(
    dead_letters: Iterable[Fields], stream: str, group: str
) -> dict[str, list[Fields]]:
    """``origin id → [dead letter, …]`` of those ``group`` wrote for ``stream``, in DLQ order."""
    out: dict[str, list[Fields]] = {}
    for fields in dead_letters:
        if written_by(fields, stream, group):
            out.setdefault(origin_of(fields), []).append(fields)
    out.pop("", None)  # no origin: the outcome of no entry
    return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of the places of (``stream``, ``group``), by source entry id.

    ``retry_ids`` and ``retry_pending`` are the retry stream's own entry ids and the
    group's pending list on it: a pending retry whose entry is gone is a loss.
    """

    stream: str
    group: str
    last_delivered: str | None
    pending: frozenset[str]
    retrying: frozenset[str]
    dead: Mapping[str, list[Fields]]
    retry_ids: frozenset[str] = frozenset()
    retry_pending: frozenset[str] = frozenset()

    def delivered(self, entry_id: str) -> bool:
        """Whether the group has been handed ``entry_id`` (at or before its last id)."""
        return self.last_delivered is not None and not is_after(entry_id, self.last_delivered)

    def places(self, entry_id: str) -> list[str]:
        """Every place among dead / retrying / pending that holds ``entry_id``.

        More than one is a *double booking*: a move that was not atomic.
        """
        held = ((DEAD, self.dead), (RETRYING, self.retrying), (PENDING, self.pending))
        return [name for name, where in held if entry_id in where]

    def place(self, entry_id: str) -> str:
        """The one place of an entry still in the stream (the first of :meth:`places`)."""
        found = self.places(entry_id)
        if found:
            return found[0]
        return ACKED if self.delivered(entry_id) else UNREAD

    def unsettled(self, entry_id: str) -> bool:
        """No outcome yet: unread, pending or retrying."""
        return entry_id in self.pending or entry_id in self.retrying or not self.delivered(entry_id)

    def reasons(self, entry_id: str) -> list[str]:
        """The reasons of ``entry_id``'s dead letters (``?`` where one has none)."""
        return [text(d.get(f.REASON.key, b"?")) for d in self.dead.get(entry_id, ())]
