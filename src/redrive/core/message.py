"""The message a handler receives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redrive.core.codec import DATA_FIELD, body, decode_body, encode_body
from redrive.errors import ConfigError

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

    The runtime builds messages; to make one in a test use :meth:`build`, which encodes
    ``data`` the way a producer would::

        msg = Message.build({"order_id": "o-1"}, attempt=2)
        await handle(msg)

    Example handler::

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

    # The Redis key the entry was read from (the source stream, or its retry stream), its
    # id there, and redrive's metadata: the runtime's bookkeeping, not a handler's concern.
    key: str
    entry_id: str
    meta: dict[str, str]
    # Fields come from Redis as a flat [name, value, ...] list; the dict is built only
    # when a handler asks for it (most read just ``data``).
    _fields: dict[bytes, bytes] | None
    _flat: list[bytes]
    _data: Any

    def __init__(
        self,
        *,
        stream: str,
        id: str,
        fields: Mapping[bytes, bytes] | None = None,
        data: Any = _UNSET,
        attempt: int = 1,
    ) -> None:
        """Keyword-only; ``data``, when given, is taken as already decoded."""
        self.stream = stream
        self.id = id
        self._fields = dict(fields) if fields is not None else {}
        self._flat = []
        self._data = data
        self.attempt = attempt
        self.key = stream
        self.entry_id = id
        self.meta = {}

    @classmethod
    def build(
        cls,
        data: Any = None,
        *,
        stream: str = "test",
        id: str = "0-1",
        attempt: int = 1,
        fields: Mapping[str, str | bytes] | Mapping[bytes, bytes] | None = None,
    ) -> Message:
        """A message as a handler would receive it, for tests.

        ``data`` is JSON-encoded into the ``data`` field (``None``: no ``data`` field), so
        ``msg.data`` is what a handler would decode (tuples come back as lists, and a value
        JSON cannot hold fails here, as it would for a producer). ``fields`` adds other
        producer fields; ``str`` names and values are UTF-8 encoded. To test a poison
        body, give it raw: ``Message.build(fields={"data": b"{not json"})``.
        """
        given: Mapping[Any, str | bytes] = fields or {}
        raw = {_utf8(k): _utf8(v) for k, v in given.items()}
        if data is not None:
            if DATA_FIELD in raw:
                raise ConfigError("Message.build: give data or fields['data'], not both")
            raw[DATA_FIELD] = encode_body(data)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise ConfigError(f"Message.build(attempt={attempt!r}): use an integer >= 1")
        return cls(stream=stream, id=id, fields=raw, attempt=attempt)

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


_new = object.__new__


def delivered(
    stream: str,
    id: str,
    key: str,
    entry_id: str,
    attempt: int,
    fields: dict[bytes, bytes] | None,
    flat: list[bytes],
    meta: dict[str, str],
) -> Message:
    """The runtime's constructor (positional, no checks: it runs once per delivery).

    ``flat`` is the entry's ``[name, value, ...]`` list as Redis sent it; ``fields``
    (``None`` to build it from ``flat`` on first access) is given when the runtime has
    already split off the metadata. ``key`` / ``entry_id`` are where the entry was read.
    """
    msg: Message = _new(Message)
    msg.stream = stream
    msg.id = id
    msg._fields = fields
    msg._flat = flat
    msg._data = _UNSET
    msg.attempt = attempt
    msg.key = key
    msg.entry_id = entry_id
    msg.meta = meta
    return msg


def _utf8(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value
