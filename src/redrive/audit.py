"""Conservation of one stream, right now: where is every entry of ``S`` for a group?

Every entry of a source stream, seen from a consumer group, is in exactly one place:

- ``dead``: a dead letter in ``dlq:{S}`` written by that group names it as its origin;
- ``retrying``: a retry of it waits in ``retry:{S}:<group>:due`` or ``retry:{S}:<group>``;
- ``pending``: delivered, in the group's pending list, no outcome yet;
- ``unread``: after the group's last delivered id;
- ``acked``: acknowledged with none of the above — handled successfully.

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
from typing import Any, cast

import redis

from redrive.dlq.model import WrongTypeError, wrong_type
from redrive.errors import ConfigError
from redrive.reconcile import entries, unpack_strings
from redrive.store.keys import StreamKeys

PAGE = 1000
SAMPLE = 20
ORIGIN = b"redrive-origin-id"


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
            **{
                k: self.counts.get(k, 0) for k in ("acked", "pending", "unread", "retrying", "dead")
            },
            "double_booked": len(self.double_booked),
            "double_booked_sample": self.double_booked[:SAMPLE],
            "trimmed_pending": len(self.trimmed_pending),
            "trimmed_pending_sample": self.trimmed_pending[:SAMPLE],
            "trimmed_retry_pending": len(self.trimmed_retry_pending),
            "outcomes_of_trimmed_entries": self.outcomes_of_trimmed_entries,
        }


def groups_of(client: redis.Redis, stream: str) -> list[str]:
    """Names of the consumer groups of ``stream`` (none if it does not exist)."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        return []
    return [_s(g["name"]) for g in groups]


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
        if _s(kind) not in (expected, "none"):
            outcome = "the audit cannot count what it holds"
            raise WrongTypeError(wrong_type(name, _s(kind), outcome, expected))


def audit_group(client: redis.Redis, k: StreamKeys) -> GroupAudit:
    """Audit one (stream, group); see the module docstring."""
    _check_types(client, [(k.retry, "stream"), (k.due, "zset"), (k.dlq, "stream")])
    out = GroupAudit(k.stream, k.group)
    ids = [_s(entry_id) for entry_id, _ in entries(client, k.stream)]
    present = set(ids)
    out.entries = len(ids)
    pel = _pending(client, k.stream, k.group)
    retrying = _retrying(client, k)
    dead = _dead(client, k)
    last = _last_delivered(client, k)
    for entry_id in ids:
        places = [
            n
            for n, s in (("dead", dead), ("retrying", retrying), ("pending", pel))
            if entry_id in s
        ]
        if len(places) > 1:
            out.double_booked.append(entry_id)
        if places:
            out.counts[places[0]] += 1
        elif last is None or _key(entry_id) > last:
            out.counts["unread"] += 1
        else:
            out.counts["acked"] += 1
    out.trimmed_pending = sorted(pel - present, key=_key)
    retry_present = {_s(i) for i, _ in entries(client, k.retry)}
    out.trimmed_retry_pending = sorted(_pending(client, k.retry, k.group) - retry_present, key=_key)
    out.outcomes_of_trimmed_entries = len((dead | retrying) - present)
    return out


def _pending(client: redis.Redis, key: str, group: str) -> set[str]:
    out: set[str] = set()
    start = "-"
    while True:
        try:
            page = client.xpending_range(key, group, min=start, max="+", count=PAGE)
        except redis.ResponseError:
            return out  # NOGROUP / no stream: nothing pending
        out.update(_s(cast(bytes, row["message_id"])) for row in page)
        if len(page) < PAGE:
            return out
        start = "(" + _s(cast(bytes, page[-1]["message_id"]))


def _retrying(client: redis.Redis, k: StreamKeys) -> set[str]:
    out = {_s(f.get(ORIGIN, b"")) for _, f in entries(client, k.retry)}
    for member in cast(list[bytes], client.zrange(k.due, 0, -1)):
        flat = unpack_strings(member)
        fields = dict(zip(flat[::2], flat[1::2], strict=False))
        out.add(_s(fields.get(ORIGIN, b"")))
    out.discard("")
    return out


def _dead(client: redis.Redis, k: StreamKeys) -> set[str]:
    out: set[str] = set()
    for _, f in entries(client, k.dlq):
        if _s(f.get(b"redrive-origin-stream", b"")) == k.stream and (
            _s(f.get(b"redrive-group", b"")) == k.group
        ):
            out.add(_s(f.get(ORIGIN, b"")))
    return out


def _last_delivered(client: redis.Redis, k: StreamKeys) -> tuple[int, int] | None:
    for info in client.xinfo_groups(k.stream):
        if _s(info["name"]) == k.group:
            return _key(_s(info["last-delivered-id"]))
    return None


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
