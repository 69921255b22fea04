"""A producer that knows, for every message, whether its XADD took effect.

Each batch goes out as one pipelined write on a raw connection, and each reply is read
one by one, so every XADD ends in one of three states:

- ``ok``: Redis answered with an entry id;
- ``failed``: the command certainly did not run (the connection could not be opened, or
  Redis answered with an error) — safe to send again, which this producer does, bounded;
- ``indeterminate``: the command was sent but its reply was lost (a reset, a timeout, a
  server crash): it may or may not be in the stream. It is *not* sent again (that could
  duplicate it); the reconciliation later looks for its ``sim-id`` in the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis import exceptions as rex
from redis.asyncio.connection import Connection

from redrive.core.text import text
from redrive.simulate.traffic import Planned

OK = "ok"
FAILED = "failed"
INDETERMINATE = "indeterminate"
_TRANSPORT = (rex.ConnectionError, rex.TimeoutError, OSError, asyncio.TimeoutError)


@dataclass(slots=True)
class Record:
    """What the producer knows about one message."""

    stream: str
    kind: str
    status: str
    entry_id: str | None = None
    sends: int = 0
    sent_ms: int = 0


@dataclass(slots=True)
class ProducerLog:
    """Every message by ``sim-id``, and how many sends ended in each state."""

    records: dict[str, Record] = field(default_factory=dict)
    sends: Counter[str] = field(default_factory=Counter)

    def status_counts(self) -> Counter[str]:
        """Final state of each message: ``ok`` / ``failed`` / ``indeterminate``."""
        return Counter(r.status for r in self.records.values())


class Producer:
    """Sends planned messages with per-XADD outcomes (see the module docstring)."""

    def __init__(
        self, host: str, port: int, *, retries: int = 100, retry_pause: float = 0.1
    ) -> None:
        self.host = host
        self.port = port
        self.retries = retries
        self.retry_pause = retry_pause
        self.log = ProducerLog()
        self._conn: Connection | None = None

    async def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None

    async def send(self, batch: Sequence[Planned]) -> None:
        """Publish ``batch``; ``failed`` sends are repeated (bounded), never indeterminate."""
        todo = list(batch)
        for sent in range(self.retries + 1):
            todo = await self._send_once(todo)
            if not todo:
                return
            if sent < self.retries:
                await asyncio.sleep(self.retry_pause)

    async def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = Connection(
                host=self.host, port=self.port, socket_timeout=5.0, socket_connect_timeout=2.0
            )
        await self._conn.connect()  # type: ignore[no-untyped-call]
        return self._conn

    async def _send_once(self, batch: list[Planned]) -> list[Planned]:
        """One pipelined write; returns the messages whose send certainly failed."""
        try:
            conn = await self._connection()
        except _TRANSPORT:
            await self.close()
            return self._mark(batch, FAILED)  # never reached Redis
        now_ms = int(time.time() * 1000)
        commands: list[list[bytes | str]] = [["XADD", p.stream, "*", *_flat(p)] for p in batch]
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
        except _TRANSPORT:
            await self.close()
            return self._mark(batch, INDETERMINATE, now_ms=now_ms, retry=False)
        failed: list[Planned] = []
        for i, planned in enumerate(batch):
            try:
                reply = await conn.read_response()
            except rex.BusyLoadingError:
                # A restarted server replies LOADING while it replays its AOF: the XADD
                # certainly did not run (redis-py files this under ConnectionError).
                failed += self._mark([planned], FAILED, now_ms=now_ms)
                continue
            except _TRANSPORT:
                await self.close()
                self._mark(batch[i:], INDETERMINATE, now_ms=now_ms, retry=False)
                break
            except rex.ResponseError:
                failed += self._mark([planned], FAILED, now_ms=now_ms)
                continue
            entry_id = text(reply)
            self._mark([planned], OK, now_ms=now_ms, entry_id=entry_id)
        return failed

    def _mark(
        self,
        batch: list[Planned],
        status: str,
        *,
        now_ms: int = 0,
        entry_id: str | None = None,
        retry: bool = True,
    ) -> list[Planned]:
        records = self.log.records
        for planned in batch:
            rec = records.get(planned.sim_id)
            if rec is None:
                rec = records[planned.sim_id] = Record(planned.stream, planned.kind, status)
            rec.status, rec.entry_id, rec.sent_ms = status, entry_id, now_ms or rec.sent_ms
            rec.sends += 1
            self.log.sends[status] += 1
        return list(batch) if status == FAILED and retry else []


def _flat(planned: Planned) -> list[bytes]:
    out: list[bytes] = []
    for name, value in planned.fields.items():
        out += [name, value]
    return out
