"""Error fingerprints of dead letters: one short hash per *kind* of failure (pure).

The fingerprint itself (type, masked message, innermost frames) is computed in
:mod:`redrive.core.fingerprint`, so the runtime's trace spans carry the same one.

Example::

    normalise_message("order 'o-17' timed out after 3012 ms")
    # "order <str> timed out after <n> ms"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from redrive.core import fields as f
from redrive.core.fingerprint import LENGTH, TOP_FRAMES, compute, normalise_message, top_frames

if TYPE_CHECKING:
    from redrive.dlq.model import DeadLetter

__all__ = ["LENGTH", "TOP_FRAMES", "compute", "fingerprint", "normalise_message", "top_frames"]


def fingerprint(entry: DeadLetter) -> str:
    """The fingerprint of a dead letter's last failure."""
    meta = entry.meta
    return compute(
        meta.get(f.ERROR_TYPE.meta, ""),
        meta.get(f.ERROR_MESSAGE.meta, ""),
        meta.get(f.TRACEBACK.meta, ""),
    )
