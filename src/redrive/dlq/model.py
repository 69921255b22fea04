"""A dead letter as read from ``dlq:{S}``, and how entries are read without loss.

Fields are kept as the ordered list of raw ``(name, value)`` byte pairs Redis returned, so
nothing is decoded, merged or reordered on the way to an export or a replay: non-UTF-8
payloads and repeated field names survive. ``redrive-*`` metadata is decoded on demand.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from operator import itemgetter
from typing import Any, cast

from redis.asyncio import Redis

from redrive.core import fields as f
from redrive.core.fields import META_PREFIX
from redrive.core.ids import exclusive, stream_id_ms
from redrive.core.text import text
from redrive.errors import ConfigError
from redrive.store import keys
from redrive.store.connection import async_client
from redrive.store.key_types import WrongTypeError, wrong_type
from redrive.store.readers import next_start

# WrongTypeError and wrong_type live in store.key_types (the read model raises them too);
# re-exported here for the DLQ package.
__all__ = [
    "PAGE",
    "REF_HELP",
    "STREAM_ID",
    "DeadLetter",
    "Pair",
    "WrongTypeError",
    "command",
    "connect",
    "dlq_wrong_type",
    "fetch",
    "iso",
    "key_types",
    "pairs_of",
    "scan",
    "split_ref",
    "wrong_type",
]

Pair = tuple[bytes, bytes]
PAGE = 500
STREAM_ID = re.compile(r"^\d+(-\d+)?$")
REF_HELP = "an id like 1700000000000-0, or STREAM@ID (ecommerce:orders@1700000000000-0)"


def dlq_wrong_type(stream: str, kind: str, outcome: str) -> str:
    """:func:`wrong_type` for ``dlq:{stream}``, saying that dead-lettering is stuck too."""
    return wrong_type(
        keys.dlq(stream), kind, f"{outcome}; workers cannot dead-letter {stream} there either"
    )


async def key_types(client: Redis, names: Sequence[str]) -> list[str]:
    """``TYPE`` of each of ``names`` (``"none"`` when missing), in one round trip."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.type(name)
    replies = await pipe.execute() if names else []
    return [text(kind) for kind in replies]


def iso(ms: int) -> str:
    """Milliseconds since the epoch as an ISO time in UTC (second precision)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_ref(text: str, what: str = "dead-letter id") -> tuple[str | None, str]:
    """``STREAM@ID`` or a bare ``ID`` → (stream or ``None``, id with its ``-seq``).

    The id is after the *last* ``@`` (ids never contain one; stream names may).
    """
    stream, sep, entry_id = text.strip().rpartition("@")
    if not STREAM_ID.match(entry_id) or (sep and not stream):
        raise ConfigError(f"{what} {text!r}: expected {REF_HELP}")
    if sep:
        keys.validate_stream_name(stream)
    return (stream if sep else None), entry_id if "-" in entry_id else entry_id + "-0"


def connect(url: str) -> Redis:
    """A client for the DLQ API: bytes replies and raw XRANGE (field order, duplicates).

    Example::

        client = connect("redis://localhost:6379/0")
        page = await list_dead_letters(client, Filter(reason="poison"))
    """
    client = async_client(url)
    for command in ("XRANGE", "XREVRANGE"):
        # redis-py folds an entry's fields into a dict, which drops repeated names.
        client.set_response_callback(command, lambda response, **_: response)
    return client


@dataclass(frozen=True)
class DeadLetter:
    """One entry of a dead-letter stream: where it is, its id and its raw fields."""

    stream: str  # the source stream S (the DLQ key is dlq:{S})
    key: str
    id: str
    pairs: tuple[Pair, ...]

    @property
    def ref(self) -> str:
        """``STREAM@ID``: names this dead letter unambiguously (ids repeat across DLQs)."""
        return f"{self.stream}@{self.id}"

    @cached_property
    def meta(self) -> dict[str, str]:
        """``redrive-*`` fields without the prefix, decoded as UTF-8 (with replacement)."""
        out: dict[str, str] = {}
        for name, value in self.pairs:
            if name.startswith(META_PREFIX):
                out[name[len(META_PREFIX) :].decode("utf-8", "replace")] = value.decode(
                    "utf-8", "replace"
                )
        return out

    @property
    def user_pairs(self) -> list[Pair]:
        """The producer's fields, in their original order."""
        return [(n, v) for n, v in self.pairs if not n.startswith(META_PREFIX)]

    @property
    def dead_ms(self) -> int:
        """When it died: ``redrive-dead-ms``, else the time in its entry id."""
        value = self.meta.get(f.DEAD_MS.meta, "")
        return int(value) if value.isdigit() else stream_id_ms(self.id)

    @property
    def reason(self) -> str:
        """Why it died (``poison``, ``max_retries_exceeded``…)."""
        return self.meta.get(f.REASON.meta, "")

    @property
    def error_type(self) -> str:
        """The exception type of the last failure."""
        return self.meta.get(f.ERROR_TYPE.meta, "")

    @property
    def error_message(self) -> str:
        """The message of the last failure."""
        return self.meta.get(f.ERROR_MESSAGE.meta, "")

    @property
    def group(self) -> str:
        """The consumer group whose handler failed it."""
        return self.meta.get(f.GROUP.meta, "")

    @property
    def replays(self) -> int:
        """How often it has been replayed from a DLQ already."""
        value = self.meta.get(f.REPLAYS.meta, "0")
        return int(value) if value.isdigit() else 0

    @property
    def attempts(self) -> int:
        """Attempts made before it died."""
        value = self.meta.get(f.ATTEMPT.meta, "0")
        return int(value) if value.isdigit() else 0

    @property
    def history(self) -> list[dict[str, Any]]:
        """The attempt history (items ``{"a", "t", "c", "e", "k", "m", "d"}``; replays
        appear as ``{"replay", "t", "by", "from", "note"}``)."""
        try:
            items = json.loads(self.meta.get(f.HISTORY.meta, "[]"))
        except ValueError:
            return []
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def field(self, name: bytes) -> bytes | None:
        """The last value of field ``name`` (as a dict built from the pairs would hold)."""
        found = None
        for n, v in self.pairs:
            if n == name:
                found = v
        return found


async def command(client: Redis, *args: Any) -> Any:
    """Send a raw command (redis-py leaves ``execute_command`` untyped)."""
    return await cast(Any, client).execute_command(*args)


def pairs_of(raw: Any) -> tuple[Pair, ...]:
    """Field pairs of one XRANGE entry, raw (flat list) or parsed by redis-py (dict)."""
    if isinstance(raw, dict):
        return tuple(raw.items())
    flat: Sequence[bytes] = raw or []
    return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2))


async def scan(
    client: Redis, stream: str, key: str, *, after: str | None = None, page: int = PAGE
) -> AsyncIterator[DeadLetter]:
    """Every entry of ``key`` in id order, starting after id ``after``."""
    start: str | None = "-" if after is None else exclusive(after)
    while start is not None:
        reply = await command(client, "XRANGE", key, start, "+", "COUNT", page)
        for entry_id, raw in reply:
            yield DeadLetter(stream, key, text(entry_id), pairs_of(raw))
        start = next_start(reply, page, itemgetter(0))


async def fetch(client: Redis, stream: str, key: str, entry_id: str) -> DeadLetter | None:
    """The entry ``entry_id`` of ``key``, or ``None``."""
    reply = await command(client, "XRANGE", key, entry_id, entry_id)
    if not reply:
        return None
    return DeadLetter(stream, key, text(reply[0][0]), pairs_of(reply[0][1]))
