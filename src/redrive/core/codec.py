"""The message body codec: JSON in the ``data`` field (pure).

Fields arrive from Redis as ``bytes``; decoding is strict: the body must be UTF-8 and
valid JSON, else :class:`~redrive.errors.DecodeError` with reason ``poison``; a body over
the size cap is refused before the handler runs (``payload_too_large``).
"""

from __future__ import annotations

import json
from typing import Any

from redrive.core.fields import META_PREFIX
from redrive.core.ids import stream_id_ms
from redrive.errors import DecodeError

# META_PREFIX and stream_id_ms are re-exported: defined in core.fields and core.ids, and
# still imported from here by the runtime.
__all__ = [
    "DATA_FIELD",
    "META_PREFIX",
    "body",
    "check_size",
    "decode_body",
    "encode_body",
    "has_meta",
    "split_meta",
    "stream_id_ms",
    "strip_meta",
]

DATA_FIELD = b"data"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decode = json.JSONDecoder(parse_constant=_no_constant).decode
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def body(flat: list[bytes]) -> bytes | None:
    """The ``data`` value of a flat ``[name, value, ...]`` field list, or ``None``."""
    if len(flat) == 2 and flat[0] == DATA_FIELD:  # the common layout: data alone
        return flat[1]
    # The last occurrence wins, as in a dict built from the same list.
    for i in range(len(flat) - 2 - len(flat) % 2, -1, -2):
        if flat[i] == DATA_FIELD:
            return flat[i + 1]
    return None


def check_size(flat: list[bytes], max_bytes: int) -> None:
    """Raise ``DecodeError(reason="payload_too_large")`` when the body exceeds the cap."""
    raw = body(flat)
    if raw is not None and len(raw) > max_bytes:
        raise DecodeError(
            f"body is {len(raw)} bytes, over the {max_bytes}-byte cap", reason="payload_too_large"
        )


def decode_body(raw: bytes | None) -> Any:
    """Decode a JSON body; ``None`` when there is none."""
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"body is not UTF-8: {exc}") from None
    try:
        return _decode(text)
    except ValueError as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise DecodeError("body is not valid JSON: nested too deeply") from None


def encode_body(value: Any) -> bytes:
    """Encode a value as a compact JSON body (``ensure_ascii`` off, UTF-8 bytes)."""
    try:
        return _encode(value).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"value cannot be encoded as JSON: {exc}") from None


def has_meta(flat: list[bytes]) -> bool:
    """Whether a flat field list has any ``redrive-*`` field."""
    return any(flat[i].startswith(META_PREFIX) for i in range(0, len(flat), 2))


def strip_meta(flat: list[bytes]) -> list[bytes]:
    """Drop ``redrive-*`` fields: on a source stream they come from producers, not redrive."""
    out: list[bytes] = []
    for i in range(0, len(flat) - 1, 2):
        if not flat[i].startswith(META_PREFIX):
            out += (flat[i], flat[i + 1])
    return out


def split_meta(flat: list[bytes]) -> tuple[dict[bytes, bytes], dict[str, str]]:
    """Split a flat field list into (producer fields, redrive metadata) for a trusted key."""
    user: dict[bytes, bytes] = {}
    meta: dict[str, str] = {}
    it = iter(flat)
    for key, value in zip(it, it, strict=False):
        if key.startswith(META_PREFIX):
            meta[key[len(META_PREFIX) :].decode("utf-8", "replace")] = value.decode(
                "utf-8", "replace"
            )
        else:
            user[key] = value
    return user, meta
