"""The message a handler receives."""

from __future__ import annotations

from typing import Any

from redrive.core.codec import DATA_FIELD, body, decode_body

_UNSET: Any = object()


class Message:
    """One delivery of a stream entry to a handler.

    ``id`` and ``stream`` name the *original* entry, stable across retries: use
    ``(msg.stream, msg.id)`` as an idempotency key (two streams may hand out one id).
    ``attempt`` is 1 on the first delivery and grows by one per retry. ``fields`` holds
    the producer's raw fields (without redrive's ``redrive-*`` metadata). ``data`` is the
    JSON body of the ``data`` field, decoded on first access: a body that is not UTF-8
    JSON raises :class:`~redrive.errors.DecodeError` there, which dead-letters the
    message with reason ``poison``.

    Example::

        async def handle(msg: Message) -> None:
            order = msg.data
            print(msg.stream, msg.id, msg.attempt, order["order_id"])
    """

    __slots__ = (
        "_data",
        "_fields",
        "_flat",
        "attempt",
        "entry_id",
        "id",
        "key",
        "meta",
        "stream",
    )

    def __init__(
        self,
        stream: str,
        id: str,
        fields: dict[bytes, bytes] | None,
        data: Any = _UNSET,
        attempt: int = 1,
        key: str | None = None,
        entry_id: str | None = None,
        meta: dict[str, str] | None = None,
        flat: list[bytes] | None = None,
    ) -> None:
        self.stream = stream
        self.id = id
        # Fields come from Redis as a flat [name, value, ...] list; the dict is built only
        # when a handler asks for it (most read just ``data``).
        self._fields = fields
        self._flat = flat if flat is not None else []
        self._data = data
        self.attempt = attempt
        self.key = key if key is not None else stream
        self.entry_id = entry_id if entry_id is not None else id
        self.meta = meta if meta is not None else {}

    @property
    def fields(self) -> dict[bytes, bytes]:
        """The producer's fields, raw bytes (``redrive-*`` metadata excluded)."""
        fields = self._fields
        if fields is None:
            it = iter(self._flat)
            fields = self._fields = dict(zip(it, it, strict=False))
        return fields

    @property
    def data(self) -> Any:
        """The decoded JSON body (``None`` when the message has no ``data`` field)."""
        value = self._data
        if value is _UNSET:
            raw = self._fields.get(DATA_FIELD) if self._fields is not None else body(self._flat)
            value = self._data = decode_body(raw)
        return value

    @data.setter
    def data(self, value: Any) -> None:
        self._data = value

    def field(self, name: str) -> str | None:
        """A producer field decoded as UTF-8 (with replacement), or ``None``."""
        raw = self.fields.get(name.encode())
        return None if raw is None else raw.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"Message(stream={self.stream!r}, id={self.id!r}, attempt={self.attempt})"
