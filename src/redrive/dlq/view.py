"""How a dead letter is shown: JSON-ready dicts with payloads truncated and redacted.

Payloads may hold personal data, so listings show a short preview and mask the fields an
operator names (``redact=("card", "email")``: top-level stream fields and keys at any
depth of the JSON body). ``show_payload=True`` shows everything, unmasked.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from redrive.core import fields as f
from redrive.core.codec import DATA_FIELD
from redrive.core.fields import META_PREFIX
from redrive.dlq.export_import import encode_bytes
from redrive.dlq.fingerprint import fingerprint
from redrive.dlq.model import DeadLetter, iso
from redrive.dlq.query import make_cursor

PREVIEW = 80
MESSAGE = 200
MASK = "***"
__all__ = ["detail", "iso", "payload", "summary", "trace_of"]


def _truncate(text: str, width: int | None) -> str:
    if width is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def _mask(value: Any, redact: Collection[str]) -> Any:
    if isinstance(value, dict):
        return {k: MASK if k in redact else _mask(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, redact) for v in value]
    return value


def _text(raw: bytes, name: bytes, redact: Collection[str]) -> str:
    if redact and name.decode("utf-8", "replace") in redact:
        return MASK
    text = raw.decode("utf-8", "replace")
    if redact and name == DATA_FIELD:
        try:
            return json.dumps(_mask(json.loads(text), redact), ensure_ascii=False)
        except ValueError:
            return text  # not JSON (a poison body): shown as is, truncated
    return text


def _is_meta(name: bytes) -> bool:
    return name.startswith(META_PREFIX)


def payload(entry: DeadLetter, *, redact: Collection[str] = (), width: int | None = PREVIEW) -> str:
    """The producer's fields as one line: the ``data`` body alone, else ``name=value …``."""
    pairs = entry.user_pairs
    if len(pairs) == 1 and pairs[0][0] == DATA_FIELD:
        return _truncate(_text(pairs[0][1], DATA_FIELD, redact), width)
    shown = " ".join(f"{n.decode('utf-8', 'replace')}={_text(v, n, redact)}" for n, v in pairs)
    return _truncate(shown, width)


def summary(
    entry: DeadLetter, *, redact: Collection[str] = (), show_payload: bool = False
) -> dict[str, Any]:
    """The listing view of ``entry`` (one ``--json`` line of ``redrive dlq list``)."""
    width = None if show_payload else PREVIEW
    return {
        "ref": entry.ref,
        "stream": entry.stream,
        "id": entry.id,
        "dead_ms": entry.dead_ms,
        "dead_at": iso(entry.dead_ms),
        "group": entry.group,
        "reason": entry.reason,
        "error_type": entry.error_type,
        "error_message": _truncate(entry.error_message, None if show_payload else MESSAGE),
        "attempts": entry.attempts,
        "replays": entry.replays,
        "origin_id": entry.meta.get(f.ORIGIN_ID.meta, ""),
        "fingerprint": fingerprint(entry),
        "payload": payload(entry, redact=() if show_payload else redact, width=width),
        "cursor": make_cursor(entry),
    }


def detail(
    entry: DeadLetter, *, redact: Collection[str] = (), show_payload: bool = False
) -> dict[str, Any]:
    """Everything about ``entry``: every field, the attempt history and the traceback."""
    out = summary(entry, redact=redact, show_payload=show_payload)
    out["error_message"] = entry.error_message
    masked = () if show_payload else redact
    out["fields"] = [
        [encode_bytes(n), _text(v, n, masked) if masked and not _is_meta(n) else encode_bytes(v)]
        for n, v in entry.pairs
        if n not in (f.HISTORY.key, f.TRACEBACK.key)  # shown on their own
    ]
    out["history"] = entry.history
    out["traceback"] = entry.meta.get(f.TRACEBACK.meta, "")
    out["trace"] = trace_of(entry)
    return out


def trace_of(entry: DeadLetter) -> dict[str, str] | None:
    """The dead letter's own trace and span ids (its ``dead_letter`` span), and the trace
    its producer started (``origin_trace_id``, when it published a W3C ``traceparent``);
    ``None`` when it has neither (it died while tracing was off)."""
    own = f.trace_ids(entry.meta.get(f.TRACEPARENT.meta))
    producer = dict(entry.user_pairs).get(f.W3C_TRACEPARENT.encode())
    origin = f.trace_ids(producer)
    if own is None and origin is None:
        return None
    out = {"trace_id": own[0], "span_id": own[1]} if own else {}
    if origin is not None:
        out["origin_trace_id"] = origin[0]
    return out
