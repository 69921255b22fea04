"""The message a handler receives."""

from __future__ import annotations

from typing import Any


class Message:
    """One delivery of a stream entry to a handler.

    ``id`` and ``stream`` name the *original* entry (stable across retries, so use
    ``msg.id`` as an idempotency key); ``attempt`` is 1 on the first delivery and grows by
    one per retry; ``data`` is the decoded JSON body; ``fields`` holds the producer's raw
    fields (without redrive's ``redrive-*`` metadata).

    Example::

        async def handle(msg: Message) -> None:
            order = msg.data
            print(msg.stream, msg.id, msg.attempt, order["order_id"])
    """

    __slots__ = ("attempt", "data", "entry_id", "fields", "id", "key", "meta", "stream")

    def __init__(
        self,
        *,
        stream: str,
        id: str,
        fields: dict[bytes, bytes],
        data: Any,
        attempt: int = 1,
        key: str | None = None,
        entry_id: str | None = None,
        meta: dict[str, str] | None = None,
    ) -> None:
        self.stream = stream
        self.id = id
        self.fields = fields
        self.data = data
        self.attempt = attempt
        self.key = key if key is not None else stream
        self.entry_id = entry_id if entry_id is not None else id
        self.meta = meta if meta is not None else {}

    def field(self, name: str) -> str | None:
        """A producer field decoded as UTF-8 (with replacement), or ``None``."""
        raw = self.fields.get(name.encode())
        return None if raw is None else raw.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"Message(stream={self.stream!r}, id={self.id!r}, attempt={self.attempt})"
