"""Export dead letters to JSONL and import them back, losslessly.

One JSON object per line::

    {"v": 1, "stream": "ecommerce:orders", "id": "1700000000000-0",
     "fields": [["data", "{\\"order_id\\": 1}"], ["card", {"b64": "/w=="}], ...]}

``fields`` keeps every pair in order (repeated names too). A name or value that is valid
UTF-8 is written as a JSON string; anything else as ``{"b64": ...}``, so binary payloads
survive byte for byte. Import reads and checks the *whole* file before writing anything:
a corrupt line fails the import with its line number and nothing is written. Entries
get new ids in the target DLQ (a stream only accepts ids above its newest one); the
original id is in the line and in the import's audit record.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

from redis.asyncio import Redis

from redrive.dlq import audit
from redrive.dlq.model import DeadLetter, Pair
from redrive.dlq.query import Filter, select
from redrive.errors import ConfigError, RedriveError
from redrive.store import keys

VERSION = 1
BATCH = 500


class ImportFileError(RedriveError):
    """An import file has a line that is not a valid export record."""


def encode_bytes(value: bytes) -> str | dict[str, str]:
    """``value`` as a JSON string if it is UTF-8, else ``{"b64": ...}``."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def decode_bytes(value: Any) -> bytes:
    """The inverse of :func:`encode_bytes`; raises ``ValueError`` on anything else."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"bad base64: {exc}") from None
    raise ValueError(f"expected a string or {{'b64': ...}}, got {json.dumps(value)[:40]}")


def to_line(entry: DeadLetter) -> str:
    """One export line for ``entry`` (no trailing newline)."""
    fields = [[encode_bytes(n), encode_bytes(v)] for n, v in entry.pairs]
    record = {"v": VERSION, "stream": entry.stream, "id": entry.id, "fields": fields}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


async def export_lines(client: Redis, flt: Filter) -> Iterator[str]:
    """Export lines of the dead letters ``flt`` selects (collected, then yielded)."""
    return iter([to_line(entry) async for entry in select(client, flt)])


@dataclass(frozen=True, slots=True)
class Record:
    """One parsed line of an export file."""

    stream: str
    id: str
    pairs: tuple[Pair, ...]


def parse_line(text: str) -> Record:
    """Parse one export line; raises ``ValueError`` saying what is wrong."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise ValueError(f"not a version-{VERSION} redrive export record")
    stream, entry_id, fields = data.get("stream"), data.get("id"), data.get("fields")
    if not isinstance(stream, str) or not isinstance(entry_id, str):
        raise ValueError("'stream' and 'id' must be strings")
    keys.validate_stream_name(stream)
    if not isinstance(fields, list) or not fields:
        raise ValueError("'fields' must be a non-empty list of [name, value] pairs")
    pairs = []
    for pair in fields:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError("each field must be a [name, value] pair")
        pairs.append((decode_bytes(pair[0]), decode_bytes(pair[1])))
    return Record(stream, entry_id, tuple(pairs))


def parse_file(lines: Iterable[str], name: str = "<input>") -> list[Record]:
    """Every record of an export file; the first bad line raises :class:`ImportFileError`."""
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(parse_line(line))
        except (ValueError, ConfigError) as exc:
            raise ImportFileError(f"{name} line {number}: {exc}; nothing was imported") from None
    return records


async def import_records(
    client: Redis, records: list[Record], *, by: str | None = None, source: str = ""
) -> dict[str, int]:
    """Append ``records`` to their DLQs (one MULTI/EXEC per batch); count per stream."""
    op = audit.Operation.start("import", by=by)
    counts: dict[str, int] = {}
    for start in range(0, len(records), BATCH):
        async with client.pipeline(transaction=True) as pipe:
            for record in records[start : start + BATCH]:
                flat = [v for pair in record.pairs for v in pair]
                cast(Any, pipe).execute_command("XADD", keys.dlq(record.stream), "*", *flat)
                counts[record.stream] = counts.get(record.stream, 0) + 1
            await pipe.execute()
    if counts:
        # So that `dlq list` (which reads the index, never KEYS) finds imported DLQs.
        await client.sadd(keys.STREAMS_INDEX, *counts)
    await audit.record(client, op, count=len(records), streams=sorted(counts),
                       details={"file": source})  # fmt: skip
    return counts


def read_text(stream: IO[bytes], name: str) -> list[str]:
    """The lines of an export file; a file that is not UTF-8 is refused whole."""
    try:
        return stream.read().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{name} is not UTF-8 text ({exc}); nothing was imported") from None
