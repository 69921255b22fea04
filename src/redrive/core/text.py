"""Text of a Redis reply (pure).

Clients created with ``decode_responses=False`` (all of redrive's) return names and ids as
``bytes``; the same code also meets ``str`` from a decoding client or a test. One helper,
so the choice below is made once.
"""

from __future__ import annotations


def text(value: bytes | str) -> str:
    """``value`` as ``str``: bytes decoded as UTF-8, an invalid byte replaced, not raised.

    Replacement, because a reply is shown or compared, never written back: a group name
    with a stray byte must not crash an audit or a dashboard.

    Example::

        text(b"orders-service") == "orders-service"
    """
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
