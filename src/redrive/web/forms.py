"""Turning query strings and forms into library values (a :class:`Filter`, job options).

Every value is checked by the library's own parsers and dataclasses, so the console
accepts exactly what ``redrive dlq`` accepts; a bad one is a
:class:`~redrive.errors.ConfigError` whose one line the page shows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from urllib.parse import urlencode

from redrive.dlq.query import Filter, parse_time
from redrive.errors import ConfigError

#: The filter's fields as the list page names them (query string and hidden inputs).
FILTER_FIELDS = ("stream", "group", "reason", "error_type", "fingerprint", "since", "until", "q")


def _one(params: Mapping[str, str], name: str) -> str | None:
    value = (params.get(name) or "").strip()
    return value or None


def filter_from(params: Mapping[str, str], ids: tuple[str, ...] = ()) -> Filter:
    """The :class:`Filter` of a list page's parameters (``q`` is plain text, not a
    pattern: it is escaped, so no input can make the search slow)."""
    now_ms = int(time.time() * 1000)
    since, until, text = _one(params, "since"), _one(params, "until"), _one(params, "q")
    stream = _one(params, "stream")
    return Filter(
        streams=(stream,) if stream else (),
        group=_one(params, "group"),
        reason=_one(params, "reason"),
        error_type=_one(params, "error_type"),
        fingerprint=_one(params, "fingerprint"),
        since_ms=parse_time(since, now_ms, "since") if since else None,
        until_ms=parse_time(until, now_ms, "until") if until else None,
        grep=re.escape(text) if text else None,
        ids=ids,
    )


def filter_params(params: Mapping[str, str]) -> dict[str, str]:
    """The filter fields of ``params`` that are set (to carry them to the next page)."""
    return {k: v.strip() for k in FILTER_FIELDS if (v := params.get(k) or "").strip()}


def query(params: Mapping[str, str], **extra: str) -> str:
    """A query string of the set filter fields plus ``extra``."""
    return urlencode({**filter_params(params), **extra})


def number(params: Mapping[str, str], name: str, *, integer: bool = False) -> float | None:
    """An optional positive number (``rate``, ``canary``); empty is ``None``."""
    raw = _one(params, name)
    if raw is None:
        return None
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name} {raw!r}: use a number") from None
    if value < 0 or (not integer and value == 0):
        raise ConfigError(f"{name} {raw!r}: use a number above 0")
    return value
