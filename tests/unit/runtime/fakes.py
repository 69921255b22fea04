"""Small fakes of the runtime's own collaborators (never of Redis)."""

from __future__ import annotations

from typing import Any

from redrive.core.message import Message
from redrive.runtime.source import Source
from redrive.store.channel import Command

MAIN = Source("orders", "orders", trusted=False)
RETRY = Source("retry:{orders}:g", "orders", trusted=True)


def entries(*ids: str, body: bytes = b'{"n": 1}') -> list[tuple[bytes, list[bytes]]]:
    """XREADGROUP-shaped entries: ``(id, [b"data", body])``."""
    return [(i.encode(), [b"data", body]) for i in ids]


class FakeSettler:
    """Records what the lanes and recovery hand to the settler."""

    def __init__(self) -> None:
        self.failures: list[tuple[Source, Message, Exception]] = []
        self.exceeded_ids: list[bytes] = []
        self.trimmed_ids: list[bytes] = []

    def failed(self, source: Source, msg: Message, exc: Exception, duration: float) -> None:
        self.failures.append((source, msg, exc))

    def exceeded(self, source: Source, entry_id: bytes, fields: list[bytes], n: int) -> None:
        self.exceeded_ids.append(entry_id)

    def trimmed(self, source: Source, entry_id: bytes) -> None:
        self.trimmed_ids.append(entry_id)


class FakeIsolation:
    """No suspects ever run: the lanes' fast path."""

    busy = False
    entry: bytes | None = None

    async def next(self) -> None:
        raise AssertionError("no suspects in this test")


class FakeLeases:
    """Answers every renewal with a fixed set of ids lost to another consumer."""

    def __init__(self, lost: set[bytes] | None = None) -> None:
        self.lost = lost or set()
        self.asked: list[bytes | None] = []

    async def renew(self, source: Source, *, also: bytes | None = None) -> set[bytes] | None:
        self.asked.append(also)
        return self.lost


class FakeChannel:
    """A round trip that returns canned replies (or raises), recording the commands."""

    def __init__(self, replies: list[Any] | Exception) -> None:
        self.replies = replies
        self.sent: list[list[Command]] = []

    async def roundtrip(self, commands: list[Command], deadline: float) -> list[Any]:
        self.sent.append(commands)
        if isinstance(self.replies, Exception):
            raise self.replies
        return self.replies
