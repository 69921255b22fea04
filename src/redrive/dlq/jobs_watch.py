"""Relapses: are the messages a job replayed failing again?

After the canary, a replay job keeps watching what it replayed: it reads the dead letters
that arrive in the DLQs it replays from (or into, for ``--to T``), a page at a time from
where it last read, and marks each of its replayed entries that is back with a newer
death (same origin id, same group: the one signal :mod:`redrive.dlq.canary` uses).

A replayed message needs time to fail again (its retries run first), so the share is
taken only over the entries replayed at least as long ago as the slowest relapse seen so
far took: the newest replays, which have not had the time, do not dilute it. The job
pauses when ``least`` relapses are seen and ``share`` of the last :data:`WINDOW` such
entries relapsed. No relapse, no verdict: a fixed cause never pauses a job.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from redis.asyncio import Redis

from redrive.core.ids import exclusive, stream_id_ms
from redrive.core.text import text
from redrive.dlq.canary import Canary
from redrive.dlq.model import command, pairs_of
from redrive.store import keys
from redrive.verify.places import origin_of, written_by

#: Replayed entries remembered per job runner (the oldest are forgotten first).
TRACK = 5000
#: The verdict is over the last this many replayed entries that had time to fail.
WINDOW = 100
#: Dead letters read per page, and pages per DLQ and check (busy DLQs: the rest waits).
PAGE = 500
PAGES = 4


@dataclass(slots=True)
class _Replayed:
    group: str
    moved_ms: int
    relapsed_ms: int = 0


class Relapses:
    """The entries one job replayed, and which of them died again."""

    def __init__(self, marks: dict[str, str], *, share: float, least: int) -> None:
        self.marks = dict(marks)  # DLQ of stream -> last id read
        self.share = share
        self.least = least
        self.replayed: OrderedDict[tuple[str, str], _Replayed] = OrderedDict()

    def track(self, canary: Canary, now_ms: int | None = None) -> None:
        """Remember one replayed entry (its consumers and relapse origin: a Canary)."""
        moved = int(time.time() * 1000) if now_ms is None else now_ms
        self.replayed[(canary.stream, canary.origin)] = _Replayed(canary.group, moved)
        self.marks.setdefault(canary.stream, "0-0")
        while len(self.replayed) > TRACK:
            self.replayed.popitem(last=False)

    async def read(self, client: Redis) -> None:
        """Read the DLQs' new dead letters (up to :data:`PAGES` pages of each), marking
        the replayed entries among them; the rest waits for the next read."""
        for stream in list(self.marks):
            for _ in range(PAGES):
                if not await self._page(client, stream):
                    break

    async def _page(self, client: Redis, stream: str) -> bool:
        reply = await command(client, "XRANGE", keys.dlq(stream), exclusive(self.marks[stream]),
                              "+", "COUNT", PAGE)  # fmt: skip
        for entry_id, raw in reply:
            fields = dict(pairs_of(raw))
            seen = self.replayed.get((stream, origin_of(fields)))
            if seen and not seen.relapsed_ms and written_by(fields, None, seen.group or None):
                seen.relapsed_ms = max(stream_id_ms(text(entry_id)), seen.moved_ms)
        if reply:
            self.marks[stream] = text(reply[-1][0])
        return len(reply) == PAGE

    def verdict(self, now_ms: int | None = None) -> str | None:
        """Why the job should pause (one line), or ``None`` while it looks healthy."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        relapsed = [r for r in self.replayed.values() if r.relapsed_ms]
        if len(relapsed) < self.least:
            return None
        lag = max(r.relapsed_ms - r.moved_ms for r in relapsed)
        settled = [r for r in self.replayed.values() if r.moved_ms <= now - lag][-WINDOW:]
        again = sum(1 for r in settled if r.relapsed_ms)
        if again < self.least or again < self.share * len(settled):
            return None
        return (
            f"replayed messages are failing again: {again} of the last {len(settled)} "
            f"replayed at least {lag / 1000:.1f} s ago are back in the DLQ"
        )
