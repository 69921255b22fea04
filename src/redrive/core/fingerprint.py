"""Error fingerprints: one short hash per *kind* of failure (pure).

A fingerprint is the exception type, the message with its variable parts masked, and the
innermost frames of the traceback (file name and function, not line numbers: a deploy
that shifts lines must not split a group). So ``timeout after 3012 ms`` and ``timeout
after 2991 ms`` share one, while a ``ValueError`` and a ``KeyError`` never do. Here in
``core`` so that the runtime's trace spans and the DLQ tools (``redrive.dlq.fingerprint``)
compute the same one.

Example::

    normalise_message("order 'o-17' timed out after 3012 ms")
    # "order <str> timed out after <n> ms"
"""

from __future__ import annotations

import hashlib
import re

TOP_FRAMES = 3
LENGTH = 12

# Order matters: quoted values and structured ids first, then any remaining number.
_MASKS = (
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b\d+-\d+\b"), "<id>"),  # stream ids
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b", re.I), "<hex>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
)
_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+, in (\S+)', re.MULTILINE)


def normalise_message(message: str) -> str:
    """The message with quoted values, ids, hex and numbers masked, whitespace squeezed."""
    text = message
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return " ".join(text.split())


def top_frames(traceback: str, count: int = TOP_FRAMES) -> list[str]:
    """The innermost ``count`` frames as ``file.py:function`` (directories dropped)."""
    frames = [f"{path.rsplit('/', 1)[-1]}:{func}" for path, func in _FRAME.findall(traceback)]
    return frames[-count:]


def compute(error_type: str, message: str, traceback: str = "") -> str:
    """The fingerprint of one failure: ``LENGTH`` hex digits."""
    parts = [error_type, normalise_message(message), *top_frames(traceback)]
    digest = hashlib.sha1("\n".join(parts).encode(), usedforsecurity=False).hexdigest()
    return digest[:LENGTH]
