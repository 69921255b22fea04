"""Selecting dead letters: which DLQs, which entries (filters), and cursor paging.

Every argument is checked before any I/O (a malformed ``--since`` fails with a message
saying what to write). Time filters use the time each entry died.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio import Redis

from redrive.dlq.fingerprint import fingerprint
from redrive.dlq.model import DeadLetter, scan
from redrive.errors import ConfigError
from redrive.store import keys

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_STREAM_ID = re.compile(r"^\d+(-\d+)?$")
TIME_HELP = "a duration ago (30m, 2h, 7d), an ISO time (2024-05-01T12:00) or ms since the epoch"


class UnknownStreamError(ConfigError):
    """A named stream has no dead-letter stream and no worker ever ran on it."""


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
    if _STREAM_ID.match(value):
        return int(value.partition("-")[0])
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
    ``until_ms`` bound the time of death. ``ids`` pick entries by DLQ id.

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

    def __post_init__(self) -> None:
        for stream in self.streams:
            keys.validate_stream_name(stream)
        for entry_id in self.ids:
            if not _STREAM_ID.match(entry_id):
                raise ConfigError(
                    f"dead-letter id {entry_id!r}: expected an id like 1700000000000-0"
                )
        if self.grep is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.grep, re.IGNORECASE))
            except re.error as exc:
                raise ConfigError(f"--grep {self.grep!r} is not a valid pattern: {exc}") from None

    def matches(self, entry: DeadLetter) -> bool:
        """Whether ``entry`` meets every criterion of this filter."""
        if (self.ids and entry.id not in self.ids) or (self.reason and entry.reason != self.reason):
            return False
        if self.error_type and not _type_matches(entry.error_type, self.error_type):
            return False
        if self.group and entry.group != self.group:
            return False
        if not self._in_time(entry.dead_ms):
            return False
        if self._pattern and not self._pattern.search(entry.error_message):
            return False
        return not self.fingerprint or fingerprint(entry).startswith(self.fingerprint)

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
    return sorted(m.decode("utf-8", "replace") if isinstance(m, bytes) else m for m in members)


async def resolve_streams(client: Redis, wanted: Sequence[str]) -> list[str]:
    """The streams to look at: ``wanted`` (each checked to exist), else every known one."""
    known = await known_streams(client)
    if not wanted:
        return known
    for stream in wanted:
        if stream not in known and not await client.exists(keys.dlq(stream)):
            shown = ", ".join(known[:10]) or "none yet"
            raise UnknownStreamError(
                f"unknown stream {stream!r}: no {keys.dlq(stream)} and no worker ran on it "
                f"(known streams: {shown})"
            )
    return sorted(set(wanted))


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; ``cursor`` resumes after its last entry (``None``: done)."""

    entries: list[DeadLetter]
    cursor: str | None


def make_cursor(entry: DeadLetter) -> str:
    """An opaque cursor that resumes right after ``entry`` (``<id>@<stream>``)."""
    return f"{entry.id}@{entry.stream}"


def _split_cursor(cursor: str) -> tuple[str, str]:
    entry_id, sep, stream = cursor.partition("@")
    if not sep or not _STREAM_ID.match(entry_id) or not stream:
        raise ConfigError(f"cursor {cursor!r} is malformed: pass the cursor a listing printed")
    return stream, entry_id


async def select(
    client: Redis, flt: Filter, *, cursor: str | None = None
) -> AsyncIterator[DeadLetter]:
    """Every matching dead letter, stream by stream (sorted), in id order within each."""
    streams = await resolve_streams(client, flt.streams)
    resume_stream, after = _split_cursor(cursor) if cursor else ("", None)
    for stream in streams:
        if cursor and stream < resume_stream:
            continue
        start = after if stream == resume_stream else None
        async for entry in scan(client, stream, keys.dlq(stream), after=start):
            if flt.matches(entry):
                yield entry


async def list_dead_letters(
    client: Redis, flt: Filter, *, limit: int = 50, cursor: str | None = None
) -> Page:
    """Up to ``limit`` matching dead letters and the cursor of the next page.

    Example::

        page = await list_dead_letters(client, Filter(reason="poison"), limit=20)
        more = await list_dead_letters(client, Filter(reason="poison"), cursor=page.cursor)
    """
    if limit < 1:
        raise ConfigError(f"limit={limit}: use an integer >= 1")
    out: list[DeadLetter] = []
    async for entry in select(client, flt, cursor=cursor):
        if len(out) == limit:
            return Page(out, make_cursor(out[-1]))
        out.append(entry)
    return Page(out, None)


async def find(client: Redis, entry_id: str, streams: Sequence[str] = ()) -> list[DeadLetter]:
    """The dead letters with id ``entry_id`` in ``streams`` (default: every known one)."""
    from redrive.dlq.model import fetch

    found = []
    for stream in await resolve_streams(client, streams):
        entry = await fetch(client, stream, keys.dlq(stream), entry_id)
        if entry is not None:
            found.append(entry)
    return found
