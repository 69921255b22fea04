"""Reconciliation: where did every produced message end up? (used by the demo)

A message produced to ``S`` and read by group ``g`` is, at any instant, in exactly one
place, because every move between them is one atomic Lua call:

- *succeeded*: its handler recorded it in a ledger (a hash: origin id → times handled);
- *dead*: a record in ``dlq:{S}`` with ``redrive-origin-id`` = its id (and this group);
- *pending*: not settled yet — unread in ``S``, in the group's pending list, waiting in
  ``retry:{S}:g:due`` or in ``retry:{S}:g``.

Anything else is **lost**, the number that must be 0. A message counted more than once
(a ledger count above 1, or both succeeded and dead) is a *duplicate*: allowed by
at-least-once delivery after a crash, unexpected in a clean run.

Example::

    report = reconcile(client, "ecommerce:orders", "orders-service", produced_ids, ledger)
    assert report.lost == 0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis

from redrive.store import keys

PAGE = 1000
SAMPLE = 10
# msgpack tag -> width of its length field: array 16/32; str 8/16/32 and bin 8/16/32.
_ARRAY_WIDTHS = {0xDC: 2, 0xDD: 4}
_STRING_WIDTHS = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}


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
    dead = dead_letters(client, k.dlq, stream, group)
    unsettled = pending_ids(client, k, produced)
    reasons: Counter[str] = Counter()
    duplicates = lost = 0
    lost_sample: list[str] = []
    for entry_id in produced:
        outcomes = ledger.get(entry_id, 0) + len(dead.get(entry_id, ()))
        duplicates += max(0, outcomes - 1)
        if entry_id in dead:
            reasons[dead[entry_id][0]] += 1
        elif not outcomes and entry_id not in unsettled:
            lost += 1
            if len(lost_sample) < SAMPLE:
                lost_sample.append(entry_id)
    produced_set = set(produced)
    return StreamReport(
        stream=stream,
        group=group,
        produced=len(produced),
        succeeded=sum(1 for i in produced if ledger.get(i, 0) and i not in dead),
        retried=int(client.hget(k.stats, "retried") or 0),
        dead=dict(sorted(reasons.items())),
        pending=len(unsettled & produced_set),
        lost=lost,
        duplicates=duplicates,
        lost_sample=tuple(lost_sample),
    )


def read_ledger(client: redis.Redis, key: str) -> dict[str, int]:
    """A ledger hash as ``{origin id: times handled}``."""
    return {_s(f): int(v) for f, v in client.hscan_iter(key, count=PAGE)}


def dead_letters(client: redis.Redis, dlq: str, stream: str, group: str) -> dict[str, list[str]]:
    """``origin id → [reason, …]`` of the dead letters ``group`` wrote for ``stream``."""
    out: dict[str, list[str]] = {}
    for _, fields in _xrange_all(client, dlq):
        if _s(fields.get(b"redrive-origin-stream", b"")) != stream:
            continue
        if _s(fields.get(b"redrive-group", b"")) != group:
            continue  # another group of the same stream shares dlq:{S}
        origin = _s(fields.get(b"redrive-origin-id", b""))
        out.setdefault(origin, []).append(_s(fields.get(b"redrive-reason", b"?")))
    return out


def pending_ids(client: redis.Redis, k: keys.StreamKeys, produced: Sequence[str]) -> set[str]:
    """Ids not settled yet: unread, in the pending list, scheduled or due for retry."""
    out = {_s(cast(bytes, e["message_id"])) for e in _pel(client, k.stream, k.group)}
    last = _last_delivered(client, k.stream, k.group)
    out.update(i for i in produced if last is None or _id_key(i) > last)
    for _, fields in _xrange_all(client, k.retry):
        out.add(_s(fields.get(b"redrive-origin-id", b"")))
    for member in cast(list[bytes], client.zrange(k.due, 0, -1)):
        flat = unpack_strings(member)
        fields = dict(zip(flat[::2], flat[1::2], strict=False))
        out.add(_s(fields.get(b"redrive-origin-id", b"")))
    return out


def entries(client: redis.Redis, key: str) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    """Every entry of stream ``key`` as ``(id, fields)``, read in pages of ``PAGE``."""
    return _xrange_all(client, key)


#: Where :func:`locate` finds an unaccounted id.
PENDING, UNREAD, RETRYING, ACKED, GONE = "pending", "unread", "retrying", "acked", "gone"


def locate(client: redis.Redis, k: keys.StreamKeys, ids: Sequence[str]) -> dict[str, str]:
    """Where each of ``ids`` (source entries) is now, for the report of a lost message.

    ``pending`` (in the group's pending list), ``unread`` (after the group's last
    delivered id), ``retrying`` (in the schedule or the retry stream), ``acked`` (still
    in the stream, but acknowledged with no outcome recorded: the trace of a loss) or
    ``gone`` (no longer in the stream: trimmed or deleted).
    """
    pel = {_s(cast(bytes, e["message_id"])) for e in _pel(client, k.stream, k.group)}
    retrying = pending_ids(client, k, ()) - pel
    last = _last_delivered(client, k.stream, k.group)
    pipe = client.pipeline(transaction=False)
    for entry_id in ids:
        pipe.xrange(k.stream, min=entry_id, max=entry_id, count=1)
    present = pipe.execute() if ids else []
    out: dict[str, str] = {}
    for entry_id, found in zip(ids, present, strict=True):
        if entry_id in pel:
            out[entry_id] = PENDING
        elif entry_id in retrying:
            out[entry_id] = RETRYING
        elif last is None or _id_key(entry_id) > last:
            out[entry_id] = UNREAD
        else:
            out[entry_id] = ACKED if found else GONE
    return out


def _pel(client: redis.Redis, stream: str, group: str) -> Iterator[dict[str, Any]]:
    start = "-"
    while True:
        try:
            page = client.xpending_range(stream, group, min=start, max="+", count=PAGE)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                return
            raise
        yield from page
        if len(page) < PAGE:
            return
        start = "(" + _s(cast(bytes, page[-1]["message_id"]))


def _last_delivered(client: redis.Redis, stream: str, group: str) -> tuple[int, int] | None:
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        return None  # no stream yet: nothing was delivered
    for info in groups:
        if _s(info["name"]) == group:
            return _id_key(_s(cast(bytes, info["last-delivered-id"])))
    return None


def _xrange_all(client: redis.Redis, key: str) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    start = "-"
    while True:
        page = cast(list[Any], client.xrange(key, min=start, max="+", count=PAGE))
        yield from page
        if len(page) < PAGE:
            return
        start = "(" + _s(page[-1][0])


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def unpack_strings(data: bytes) -> list[bytes]:
    """Decode a msgpack array of strings (how ``schedule_retry.lua`` packs a retry).

    Only the types ``cmsgpack.pack`` emits for a Lua array of strings are understood;
    anything else raises ``ValueError``. Kept here so reading the schedule needs no
    msgpack dependency.
    """
    count, pos = _header(data, 0, fix=(0x90, 0x0F), sized=_ARRAY_WIDTHS)
    out: list[bytes] = []
    for _ in range(count):
        size, pos = _header(data, pos, fix=(0xA0, 0x1F), sized=_STRING_WIDTHS)
        out.append(data[pos : pos + size])
        pos += size
    return out


def _header(
    data: bytes, pos: int, *, fix: tuple[int, int], sized: dict[int, int]
) -> tuple[int, int]:
    tag = data[pos]
    base, mask = fix
    if tag & ~mask == base:
        return tag & mask, pos + 1
    width = sized.get(tag)
    if width is None:
        raise ValueError(f"unexpected msgpack tag 0x{tag:02x} at byte {pos}")
    return int.from_bytes(data[pos + 1 : pos + 1 + width], "big"), pos + 1 + width
