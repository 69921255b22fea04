"""One of the two streams a consumer reads: the source stream or its retry stream.

Metadata (``redrive-*`` fields) is trusted only on the retry stream, which only redrive
writes; on the source stream a producer's ``redrive-*`` fields are dropped, so nobody can
skip retries or forge a dead-letter record by writing them.
"""

from __future__ import annotations

import itertools

from redrive.core.codec import META_PREFIX, split_meta, strip_meta
from redrive.core.message import Message, delivered

ACKED_MEMORY = 20_000


class Source:
    """A stream key with its pending acks and the entries this consumer holds."""

    __slots__ = ("acked", "acks", "delete", "held", "key", "name_b", "stream", "tag", "trusted")

    def __init__(self, key: str, stream: str, *, trusted: bool) -> None:
        self.key = key
        self.stream = stream
        self.name_b = key.encode()
        self.trusted = trusted
        # Retry entries are deleted once settled: their content lives on elsewhere.
        self.delete = "1" if trusted else "0"
        self.tag = b"r:" if trusted else b"s:"  # field prefix in the suspects' starts hash
        self.acks: list[bytes] = []
        # entry id -> when it was received or its lease last renewed (time.perf_counter)
        self.held: dict[bytes, float] = {}
        # Recently acked ids (insertion-ordered, bounded): an ack that Redis lost (a crash
        # before its fsync) makes the entry pending again; it is acked again, not re-run.
        self.acked: dict[bytes, None] = {}

    def remember_acked(self, ids: list[bytes]) -> None:
        """Note ``ids`` as acked; keep the latest :data:`ACKED_MEMORY` of them."""
        acked = self.acked
        acked.update(dict.fromkeys(ids))
        excess = len(acked) - ACKED_MEMORY
        if excess > 0:
            for entry_id in list(itertools.islice(acked, excess)):
                del acked[entry_id]

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
            attempt = max(1, int(meta.get("attempt", "1")))
        except ValueError:
            attempt = 1
        origin = meta.get("origin-id") or eid
        return delivered(self.stream, origin, self.key, eid, attempt, user, [], meta)
