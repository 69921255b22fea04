"""The message body codec: JSON in the ``data`` field (pure).

Fields arrive from Redis as ``bytes``; decoding is strict: the body must be UTF-8 and
valid JSON and at most ``max_bytes`` long, else :class:`~redrive.errors.DecodeError` with
the dead-letter reason (``poison`` or ``payload_too_large``).
"""

from __future__ import annotations

import json
from typing import Any

from redrive.errors import DecodeError

DATA_FIELD = b"data"
META_PREFIX = b"redrive-"

_decode = json.JSONDecoder().decode
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def decode_body(fields: dict[bytes, bytes], max_bytes: int) -> Any:
    """Decode the JSON body of a message; ``None`` when it has no ``data`` field."""
    raw = fields.get(DATA_FIELD)
    if raw is None:
        return None
    if len(raw) > max_bytes:
        raise DecodeError(
            f"body is {len(raw)} bytes, over the {max_bytes}-byte cap", reason="payload_too_large"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"body is not UTF-8: {exc}") from None
    try:
        return _decode(text)
    except ValueError as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from None


def encode_body(value: Any) -> bytes:
    """Encode a value as a compact JSON body (``ensure_ascii`` off, UTF-8 bytes)."""
    try:
        return _encode(value).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"value cannot be encoded as JSON: {exc}") from None


def strip_meta(fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """Drop ``redrive-*`` fields: on a source stream they come from producers, not redrive."""
    return {k: v for k, v in fields.items() if not k.startswith(META_PREFIX)}


def split_meta(fields: dict[bytes, bytes]) -> tuple[dict[bytes, bytes], dict[str, str]]:
    """Split fields into (producer fields, redrive metadata) for a trusted key."""
    user: dict[bytes, bytes] = {}
    meta: dict[str, str] = {}
    for key, value in fields.items():
        if key.startswith(META_PREFIX):
            meta[key[len(META_PREFIX) :].decode("utf-8", "replace")] = value.decode(
                "utf-8", "replace"
            )
        else:
            user[key] = value
    return user, meta


def stream_id_ms(entry_id: bytes | str) -> int:
    """Milliseconds part of a stream id (``1700000000000-0`` → 1700000000000)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    head, _, _ = text.partition("-")
    return int(head)
