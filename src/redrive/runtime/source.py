"""One of the two streams a consumer reads: the source stream or its retry stream.

Metadata (``redrive-*`` fields) is trusted only on the retry stream, which only redrive
writes; on the source stream a producer's ``redrive-*`` fields are dropped, so nobody can
skip retries or forge a dead-letter record by writing them.
"""

from __future__ import annotations

from redrive.core.codec import split_meta, strip_meta
from redrive.core.fields import ATTEMPT, META_PREFIX, ORIGIN_ID
from redrive.core.message import Message, delivered


class Source:
    """A stream key a consumer reads, and how its entries are treated (a plain value)."""

    __slots__ = ("key", "name_b", "stream", "tag", "trusted")

    def __init__(self, key: str, stream: str, *, trusted: bool) -> None:
        self.key = key
        self.stream = stream
        self.name_b = key.encode()
        # Also: retry entries are deleted once settled (their content lives on elsewhere).
        self.trusted = trusted
        self.tag = b"r:" if trusted else b"s:"  # field prefix in the suspects' starts hash

    def message(self, entry_id: bytes, flat: list[bytes]) -> Message:
        """Build the handler's view of an entry (``data`` is decoded on first access)."""
        eid = entry_id.decode()
        if not self.trusted:
            for i in range(0, len(flat), 2):
                if flat[i].startswith(META_PREFIX):
                    flat = strip_meta(flat)
                    break
            return delivered(self.stream, eid, self.key, eid, 1, None, flat, {})
        user, meta = split_meta(flat)
        try:
            attempt = max(1, int(meta.get(ATTEMPT.meta, "1")))
        except ValueError:
            attempt = 1
        origin = meta.get(ORIGIN_ID.meta) or eid
        return delivered(self.stream, origin, self.key, eid, attempt, user, [], meta)
