"""Selecting dead letters: which DLQs, which entries (filters), and cursor paging.

Every argument is checked before any I/O (a malformed ``--since`` fails with a message
saying what to write). Time filters use the time each entry died.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio import Redis

from redrive.core.decision import REASONS
from redrive.core.ids import id_key, stream_id_ms
from redrive.core.text import text as as_text
from redrive.dlq.fingerprint import fingerprint
from redrive.dlq.model import (
    STREAM_ID,
    DeadLetter,
    WrongTypeError,
    dlq_wrong_type,
    fetch,
    iso,
    key_types,
    scan,
    split_ref,
)
from redrive.errors import ConfigError
from redrive.store import keys

log = logging.getLogger("redrive.dlq")
#: Told, one line each, about every DLQ of the index that is skipped (see resolve_streams).
OnSkip = Callable[[str], None]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
TIME_HELP = "a duration ago (30m, 2h, 7d), an ISO time (2024-05-01T12:00) or ms since the epoch"
Ref = tuple[str | None, str]
__all__ = ["REASONS", "TIME_HELP", "Filter", "OnSkip", "Page", "by_ids", "find",
           "list_dead_letters", "parse_duration", "parse_time", "select"]  # fmt: skip


class UnknownStreamError(ConfigError):
    """A named stream has no dead-letter stream and no worker ever ran on it."""


class UnknownIdError(ConfigError):
    """An id given to replay, show or purge is in none of the selected DLQs."""


class AmbiguousIdError(ConfigError):
    """A bare id is in more than one DLQ: name the stream (``STREAM@ID``)."""


class FilterMismatchError(ConfigError):
    """An entry named by ``--id`` exists but the other criteria exclude it."""


def parse_duration(text: str, what: str = "duration") -> int:
    """``30s``, ``15m``, ``2h``, ``7d``, ``1w``, ``500ms`` → milliseconds."""
    found = _DURATION.match(text.strip())
    if not found:
        raise ConfigError(f"{what} {text!r}: use a number with a unit, e.g. 30m, 2h or 7d")
    return int(float(found.group(1)) * _UNIT_MS[found.group(2)])


def parse_time(text: str, now_ms: int, what: str = "--since") -> int:
    """A point in time as ms since the epoch: a duration ago, an ISO time, or ms/stream id."""
    value = text.strip()
    if _DURATION.match(value):
        return now_ms - parse_duration(value, what)
    if STREAM_ID.match(value):
        return stream_id_ms(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: use {TIME_HELP}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Filter:
    """Which dead letters to select; every criterion given must match.

    ``streams`` are source stream names (empty: every stream in the index). ``grep`` is a
    case-insensitive regular expression searched in the error message. ``since_ms`` /
    ``until_ms`` bound the time of death. ``ids`` pick entries by DLQ id, each a bare
    ``ID`` or ``STREAM@ID`` (a bare id must be in exactly one of the selected DLQs).

    Example::

        Filter(streams=("ecommerce:orders",), reason="max_retries_exceeded", grep="timeout")
    """

    streams: tuple[str, ...] = ()
    reason: str | None = None
    error_type: str | None = None
    group: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    grep: str | None = None
    fingerprint: str | None = None
    ids: tuple[str, ...] = ()
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    refs: tuple[Ref, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for stream in self.streams:
            keys.validate_stream_name(stream)
        refs = tuple(dict.fromkeys(split_ref(text) for text in self.ids))
        for named, entry_id in refs:
            if named is not None and self.streams and named not in self.streams:
                raise ConfigError(
                    f"--id {named}@{entry_id}: {named!r} is not among the STREAMs given "
                    f"({', '.join(self.streams)})"
                )
        object.__setattr__(self, "refs", refs)
        if self.reason is not None and self.reason not in REASONS:
            raise ConfigError(
                f"--reason {self.reason!r} is not a dead-letter reason: use one of "
                + ", ".join(REASONS)
            )
        if self.grep is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.grep, re.IGNORECASE))
            except re.error as exc:
                raise ConfigError(f"--grep {self.grep!r} is not a valid pattern: {exc}") from None

    def matches(self, entry: DeadLetter) -> bool:
        """Whether ``entry`` meets every criterion of this filter."""
        return self._id_matches(entry) and self.mismatch(entry) is None

    def _id_matches(self, entry: DeadLetter) -> bool:
        return not self.refs or any(
            i == entry.id and stream in (None, entry.stream) for stream, i in self.refs
        )

    def mismatch(self, entry: DeadLetter) -> str | None:
        """Which criterion (other than ``ids``) excludes ``entry``, and why; ``None``: none."""
        fp = self.fingerprint
        checks: list[tuple[bool, Callable[[], str]]] = [
            (bool(self.reason) and entry.reason != self.reason,
             lambda: f"its reason is {entry.reason or 'unset'}, not --reason {self.reason}"),
            (bool(self.error_type) and not _type_matches(entry.error_type, self.error_type or ""),
             lambda: f"it failed with {entry.error_type or '?'}, "
                     f"not --error-type {self.error_type}"),
            (bool(self.group) and entry.group != self.group,
             lambda: f"group {entry.group or '?'} failed it, not --group {self.group}"),
            (not self._in_time(entry.dead_ms),
             lambda: f"it died at {iso(entry.dead_ms)}, outside --since/--until/--older-than"),
            (bool(self._pattern and not self._pattern.search(entry.error_message)),
             lambda: f"--grep {self.grep!r} is not in its error {entry.error_message[:80]!r}"),
            (bool(fp) and not fingerprint(entry).startswith(fp or ""),
             lambda: f"its fingerprint is {fingerprint(entry)}, not {fp}"),
        ]  # fmt: skip
        return next((why() for failed, why in checks if failed), None)

    def _in_time(self, dead_ms: int) -> bool:
        if self.since_ms is not None and dead_ms < self.since_ms:
            return False
        return self.until_ms is None or dead_ms <= self.until_ms

    @property
    def is_empty(self) -> bool:
        """True when no criterion narrows the selection (every entry matches)."""
        given = (self.reason, self.error_type, self.group, self.grep, self.fingerprint, self.ids)
        return not any(given) and self.since_ms is None and self.until_ms is None

    def describe(self) -> str:
        """The criteria as one line, for confirmations and the audit stream."""
        parts = [f"{k}={v}" for k, v in self._criteria() if v not in (None, ())]
        return " ".join(parts) or "all"

    def _criteria(self) -> list[tuple[str, object]]:
        return [("streams", ",".join(self.streams) or None), ("reason", self.reason),
                ("error_type", self.error_type), ("group", self.group),
                ("since_ms", self.since_ms), ("until_ms", self.until_ms), ("grep", self.grep),
                ("fingerprint", self.fingerprint), ("ids", ",".join(self.ids) or None)]  # fmt: skip


def _type_matches(actual: str, wanted: str) -> bool:
    # "TimeoutError" matches "builtins" names and module-qualified ones alike.
    return actual == wanted or actual.rsplit(".", 1)[-1] == wanted


async def known_streams(client: Redis) -> list[str]:
    """Source streams that have had a worker, sorted (the ``redrive:streams`` index)."""
    members = await client.smembers(keys.STREAMS_INDEX)
    return sorted(as_text(m) for m in members)


async def resolve_streams(
    client: Redis, wanted: Sequence[str], on_skip: OnSkip | None = None
) -> list[str]:
    """The streams to look at: ``wanted`` (each checked to exist), else every known one.

    A ``dlq:{S}`` that holds another type than a stream cannot be read. Taken from the
    index (no ``wanted``), it is skipped and ``on_skip`` (default: a logged warning) is
    told, so one bad key does not hide every other DLQ; named in ``wanted``, it raises
    :class:`WrongTypeError`: what was asked for cannot be done.
    """
    known = await known_streams(client)
    if not wanted:
        return await _readable(client, known, on_skip or _log_skip)
    for stream in wanted:
        if stream not in known and not await client.exists(keys.dlq(stream)):
            shown = ", ".join(known[:10]) or "none yet"
            raise UnknownStreamError(
                f"unknown stream {stream!r}: no {keys.dlq(stream)} and no worker ran on it "
                f"(known streams: {shown})"
            )
    streams = sorted(set(wanted))
    await require_streams(client, streams, "nothing read or changed")
    return streams


async def require_streams(client: Redis, streams: Sequence[str], outcome: str) -> None:
    """Raise :class:`WrongTypeError` if the ``dlq:{S}`` of one of ``streams`` is not a
    stream (a missing one is fine: the first dead letter creates it)."""
    for stream, kind in (await _wrong_types(client, streams)).items():
        raise WrongTypeError(dlq_wrong_type(stream, kind, outcome))


async def _readable(client: Redis, streams: list[str], on_skip: OnSkip) -> list[str]:
    bad = await _wrong_types(client, streams)
    for stream, kind in bad.items():
        on_skip(dlq_wrong_type(stream, kind, "skipped"))
    return [s for s in streams if s not in bad]


async def _wrong_types(client: Redis, streams: Sequence[str]) -> dict[str, str]:
    """Stream -> type of its ``dlq:{S}``, for each that is neither a stream nor missing."""
    kinds = await key_types(client, [keys.dlq(s) for s in streams])
    return {s: k for s, k in zip(streams, kinds, strict=True) if k not in ("stream", "none")}


def _log_skip(message: str) -> None:
    log.warning("%s", message)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; ``cursor`` resumes after its last entry (``None``: done)."""

    entries: list[DeadLetter]
    cursor: str | None


def make_cursor(entry: DeadLetter) -> str:
    """A cursor that resumes right after ``entry``: its ``STREAM@ID``."""
    return entry.ref


def _split_cursor(cursor: str) -> tuple[str, str]:
    try:
        stream, entry_id = split_ref(cursor, "cursor")
    except ConfigError:
        stream = None
    if stream is None:
        raise ConfigError(f"cursor {cursor!r} is malformed: pass the cursor a listing printed")
    return stream, entry_id


async def select(
    client: Redis, flt: Filter, *, cursor: str | None = None, on_skip: OnSkip | None = None
) -> AsyncIterator[DeadLetter]:
    """Every matching dead letter, stream by stream (sorted), in id order within each.

    With ``flt.ids`` only those entries are read (see :func:`by_ids`). A DLQ of the index
    that is not a stream is skipped, and ``on_skip`` told (see :func:`resolve_streams`).
    """
    resume_stream, after = _split_cursor(cursor) if cursor else ("", None)
    if flt.refs:
        for entry in await by_ids(client, flt, on_skip=on_skip):
            if not after or (entry.stream, id_key(entry.id)) > (resume_stream, id_key(after)):
                yield entry
        return
    for stream in await resolve_streams(client, flt.streams, on_skip):
        if cursor and stream < resume_stream:
            continue
        start = after if stream == resume_stream else None
        async for entry in scan(client, stream, keys.dlq(stream), after=start):
            if flt.matches(entry):
                yield entry


async def by_ids(client: Redis, flt: Filter, *, on_skip: OnSkip | None = None) -> list[DeadLetter]:
    """The entries ``flt.ids`` name, each checked against the other criteria.

    Raises :class:`UnknownIdError` (in no selected DLQ), :class:`AmbiguousIdError` (a bare
    id in several: the candidates are listed) or :class:`FilterMismatchError` (found, but
    e.g. ``--reason`` excludes it: says what the entry really is). A bare id is looked up
    in the readable DLQs only (``on_skip`` is told of the others); ``STREAM@ID`` names its
    DLQ, so one that is not a stream raises :class:`WrongTypeError`.
    """
    found: dict[str, DeadLetter] = {}
    unknown: list[str] = []
    bare = any(stream is None for stream, _ in flt.refs)
    every = await resolve_streams(client, flt.streams, on_skip) if bare else []
    for stream, entry_id in flt.refs:
        where = await resolve_streams(client, [stream]) if stream else every
        hits = [e for s in where if (e := await fetch(client, s, keys.dlq(s), entry_id))]
        if not hits:
            unknown.append(f"{stream}@{entry_id}" if stream else entry_id)
        elif len(hits) > 1:
            raise AmbiguousIdError(
                f"dead-letter id {entry_id} is in {len(hits)} DLQs: "
                f"{', '.join(e.ref for e in hits)}; pass one of these or name the stream"
            )
        elif why := flt.mismatch(hits[0]):
            raise FilterMismatchError(f"dead letter {hits[0].ref} is excluded: {why}")
        else:
            found[hits[0].ref] = hits[0]
    if unknown:
        scope = ", ".join(flt.streams) if flt.streams else "any stream"
        raise UnknownIdError(f"unknown dead-letter id(s) in {scope}: {', '.join(unknown)}")
    return sorted(found.values(), key=lambda e: (e.stream, id_key(e.id)))


async def list_dead_letters(
    client: Redis,
    flt: Filter,
    *,
    limit: int = 50,
    cursor: str | None = None,
    on_skip: OnSkip | None = None,
) -> Page:
    """Up to ``limit`` matching dead letters and the cursor of the next page.

    Example::

        page = await list_dead_letters(client, Filter(reason="poison"), limit=20)
        more = await list_dead_letters(client, Filter(reason="poison"), cursor=page.cursor)
    """
    if limit < 1:
        raise ConfigError(f"limit={limit}: use an integer >= 1")
    out: list[DeadLetter] = []
    async for entry in select(client, flt, cursor=cursor, on_skip=on_skip):
        if len(out) == limit:
            return Page(out, make_cursor(out[-1]))
        out.append(entry)
    return Page(out, None)


async def find(
    client: Redis, entry_id: str, streams: Sequence[str] = (), on_skip: OnSkip | None = None
) -> list[DeadLetter]:
    """The dead letters with id ``entry_id`` in ``streams`` (default: every known one).

    Every candidate is returned; :func:`by_ids` is the strict form the CLI uses.
    """
    found = []
    for stream in await resolve_streams(client, streams, on_skip):
        entry = await fetch(client, stream, keys.dlq(stream), entry_id)
        if entry is not None:
            found.append(entry)
    return found
