"""Stream entry ids: parse, order, compare (pure).

An id is ``<ms>-<seq>``; Redis also accepts a bare ``<ms>`` (seq 0). Ids compare as the
pair of integers, never as text: ``"10-0"`` is after ``"9-0"``.

Example::

    sorted(ids, key=id_key)
    is_after("5-1", "5-0")  # True
"""

from __future__ import annotations

from collections.abc import Iterable

from redrive.core.text import text

IdKey = tuple[int, int]


def id_key(entry_id: bytes | str) -> IdKey:
    """An entry id as a sortable pair (``"5-1"`` → ``(5, 1)``, ``"5"`` → ``(5, 0)``)."""
    ms, _, seq = text(entry_id).partition("-")
    return int(ms), int(seq or 0)


def stream_id_ms(entry_id: bytes | str) -> int:
    """Milliseconds part of a stream id (``1700000000000-0`` → 1700000000000)."""
    return int(text(entry_id).partition("-")[0])


def is_after(entry_id: bytes | str, mark: bytes | str | None) -> bool:
    """Whether ``entry_id`` comes after ``mark``; everything is after no mark (``None``)."""
    return mark is None or id_key(entry_id) > id_key(mark)


def exclusive(entry_id: bytes | str) -> str:
    """The XRANGE/XPENDING start that begins just after ``entry_id`` (``(5-1``)."""
    return "(" + text(entry_id)


def sort_ids(ids: Iterable[str]) -> list[str]:
    """``ids`` in stream order."""
    return sorted(ids, key=id_key)
