"""Paged reads of streams, pending lists and groups (sync), and the page stepping they share.

A read of a whole stream or pending list goes in pages of :data:`PAGE`, each starting
just after the last id of the one before (:func:`next_start`, pure, so an async reader
such as :func:`redrive.dlq.model.scan` steps the same way). Nothing here is atomic
across pages: a read of a live stream is a walk, not a snapshot.

Example::

    for entry_id, fields in entries(client, "ecommerce:orders"):
        ...
    pel = {text(row["message_id"]) for row in pending(client, "ecommerce:orders", "g")}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, TypeVar, cast

import redis

from redrive.core.ids import exclusive
from redrive.core.text import text

PAGE = 1000
Entry = tuple[bytes, dict[bytes, bytes]]
Row = TypeVar("Row")

_entry_id: Callable[[Entry], bytes] = itemgetter(0)


def next_start(rows: Sequence[Row], size: int, id_of: Callable[[Row], bytes | str]) -> str | None:
    """Where the page after ``rows`` (asked for ``size``) starts, or ``None``: it was the last.

    A short page is the last one; a full one may have more after its last id.
    """
    if not rows or len(rows) < size:
        return None
    return exclusive(id_of(rows[-1]))


def entries(
    client: redis.Redis, key: str, *, start: str = "-", size: int = PAGE
) -> Iterator[Entry]:
    """Every entry of stream ``key`` from ``start`` on, as ``(id, fields)``; none if missing."""
    cursor: str | None = start
    while cursor is not None:
        page = cast(list[Entry], client.xrange(key, min=cursor, max="+", count=size))
        yield from page
        cursor = next_start(page, size, _entry_id)


def pending(
    client: redis.Redis, key: str, group: str, *, size: int = PAGE
) -> Iterator[dict[str, Any]]:
    """Every row of ``group``'s pending list on ``key`` (XPENDING, extended form).

    Rows as redis-py gives them: ``message_id``, ``consumer``, ``time_since_delivered``,
    ``times_delivered``. Nothing when the stream or the group does not exist (NOGROUP).
    """
    cursor: str | None = "-"
    while cursor is not None:
        try:
            page = client.xpending_range(key, group, min=cursor, max="+", count=size)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                return
            raise
        yield from page
        cursor = next_start(page, size, _message_id)


def pending_ids(client: redis.Redis, key: str, group: str) -> set[str]:
    """The ids in ``group``'s pending list on ``key``."""
    return {text(_message_id(row)) for row in pending(client, key, group)}


def groups(client: redis.Redis, stream: str) -> list[dict[str, Any]]:
    """XINFO GROUPS of ``stream`` (``name``, ``last-delivered-id``, ``lag``…); none if missing."""
    try:
        return client.xinfo_groups(stream)
    except redis.ResponseError:
        return []  # no such stream: it has no groups


def group_names(client: redis.Redis, stream: str) -> list[str]:
    """Names of the consumer groups of ``stream`` (none if it does not exist)."""
    return [text(info["name"]) for info in groups(client, stream)]


def last_delivered(client: redis.Redis, stream: str, group: str) -> str | None:
    """The last id ``group`` was handed (``None``: no such stream or group)."""
    for info in groups(client, stream):
        if text(info["name"]) == group:
            return text(info["last-delivered-id"])
    return None


def _message_id(row: dict[str, Any]) -> bytes | str:
    return cast(bytes | str, row["message_id"])
