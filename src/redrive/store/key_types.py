"""A key that holds another type than redrive needs (``dlq:{S}`` a string, say).

Readers at every layer meet it — the read model, the DLQ tools, the audit — so the
error and its one-line message live here, below all of them.
"""

from __future__ import annotations

from redrive.errors import StoreError


class WrongTypeError(StoreError):
    """A key redrive was asked to read or write (``dlq:{S}``, say) holds another type
    than it needs; the message names the key, its type and how to move it aside."""


def wrong_type(key: str, kind: str, outcome: str, expected: str = "stream") -> str:
    """One line: ``key`` holds a ``kind``, so ``outcome``; and how to move it aside.

    RENAMENX, not RENAME: a key already called ``KEY:saved`` is never overwritten, and the
    new name keeps the hash tag, so it works on a cluster too.

    Example::

        raise WrongTypeError(wrong_type("dlq:{orders}", "string", "nothing read"))
    """
    return (
        f"{key} is a {kind}, not a {expected}: {outcome} "
        f"(move it aside: RENAMENX '{key}' '{key}:saved')"
    )
