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

**Importing twice** does not double anything: a record whose fields (every pair, in
order, byte for byte: its metadata holds its origin id and time of death) equal an entry
already in its DLQ is skipped and counted as *already present*; ``allow_duplicates``
imports it anyway. Two ways find such a record: the DLQs are read before the import
(entries there however they came), and each write checks ``redrive:dlq-imported:{S}``
(digest -> id, kept a day after the last import into ``S``) in the same script, so two
imports of one file at the same time, or a re-run after a crash, write each record once.

**Across slots** (Redis Cluster): the records are written per stream, in batches of 500,
each batch one ``import_dead_letters.lua`` call on the stream's own slot with its audit
record in ``redrive:audit:{S}``. The stream index is written *before* the first batch,
so whatever a failed or interrupted import wrote is listed, counted and audited; the
summary goes to ``redrive:audit`` even then.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from redis.asyncio import Redis

from redrive.dlq import audit
from redrive.dlq.model import DeadLetter, Pair, WrongTypeError, key_types, scan, wrong_type
from redrive.dlq.query import Filter, OnSkip, require_streams, select
from redrive.errors import ConfigError, RedriveError
from redrive.store import calls, keys

VERSION = 1
BATCH = 500
#: How long ``redrive:dlq-imported:{S}`` outlives the last import into ``S`` (seconds).
IMPORTED_TTL = 86_400


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


async def export_lines(
    client: Redis, flt: Filter, *, on_skip: OnSkip | None = None
) -> Iterator[str]:
    """Export lines of the dead letters ``flt`` selects (collected, then yielded); a DLQ
    of the index that is not a stream is skipped, and ``on_skip`` told."""
    return iter([to_line(entry) async for entry in select(client, flt, on_skip=on_skip)])


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


@dataclass(slots=True)
class ImportResult:
    """What an import wrote (``imported``) and skipped (``present``), per stream."""

    imported: dict[str, int] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)

    @property
    def total_imported(self) -> int:
        """Records written."""
        return sum(self.imported.values())

    @property
    def total_present(self) -> int:
        """Records skipped because their DLQ already holds them."""
        return sum(self.present.values())


def identity(pairs: Sequence[Pair]) -> bytes:
    """A digest of every field pair, in order (length-prefixed: no two lists collide)."""
    digest = hashlib.sha256()
    for name, value in pairs:
        for part in (name, value):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.digest()


async def _present(client: Redis, streams: Iterable[str]) -> set[tuple[str, bytes]]:
    seen: set[tuple[str, bytes]] = set()
    for stream in streams:
        async for entry in scan(client, stream, keys.dlq(stream)):
            seen.add((stream, identity(entry.pairs)))
    return seen


async def import_records(
    client: Redis,
    records: list[Record],
    *,
    by: str | None = None,
    source: str = "",
    allow_duplicates: bool = False,
) -> ImportResult:
    """Append ``records`` to their DLQs (one script call per stream and batch), skipping
    the ones already there unless ``allow_duplicates`` (see the module docstring). A
    target DLQ that holds another type than a stream refuses the whole import
    (:class:`~redrive.dlq.WrongTypeError`), before anything is written.

    Example::

        result = await import_records(client, parse_file(open("dlq.jsonl"), "dlq.jsonl"))
        print(f"imported {result.total_imported}, {result.total_present} already present")
    """
    streams = sorted({r.stream for r in records})
    # Before any write: a batch that fails half-way (WRONGTYPE) keeps what it wrote.
    await require_streams(client, streams, "nothing was imported")
    await _require_digests(client, streams)
    await audit.require_trails(client, streams)  # per batch in redrive:audit:{S}, and the summary
    op = audit.Operation.start("import", by=by)
    result = ImportResult()
    seen = set() if allow_duplicates else await _present(client, streams)
    fresh: dict[str, list[Record]] = {}
    for record in records:
        mark = (record.stream, identity(record.pairs))
        if mark in seen:
            result.present[record.stream] = result.present.get(record.stream, 0) + 1
            continue
        if not allow_duplicates:  # a record twice in the file is imported once
            seen.add(mark)
        fresh.setdefault(record.stream, []).append(record)
    if fresh:
        # Index first: what the batches write is listed and counted even if one fails.
        await client.sadd(keys.STREAMS_INDEX, *fresh)
    try:
        for stream, batch in _batches(fresh):
            done = await _append(client, op, stream, batch, check=not allow_duplicates)
            _count(result.imported, stream, done.imported)
            _count(result.present, stream, done.present)
    finally:
        details = {"file": source, "already-present": result.total_present}
        await audit.record(client, op, count=result.total_imported,
                           streams=sorted(result.imported), details=details)  # fmt: skip
    return result


def _count(counts: dict[str, int], stream: str, n: int) -> None:
    if n:
        counts[stream] = counts.get(stream, 0) + n


def _batches(fresh: dict[str, list[Record]]) -> Iterator[tuple[str, list[Record]]]:
    for stream, records in fresh.items():
        for start in range(0, len(records), BATCH):
            yield stream, records[start : start + BATCH]


async def _require_digests(client: Redis, streams: Sequence[str]) -> None:
    names = [keys.dlq_imported(s) for s in streams]
    for name, kind in zip(names, await key_types(client, names), strict=True):
        if kind not in ("hash", "none"):
            raise WrongTypeError(wrong_type(name, kind, "nothing was imported"))


async def _append(
    client: Redis, op: audit.Operation, stream: str, batch: list[Record], *, check: bool
) -> calls.ImportResult:
    entries = [(identity(r.pairs).hex(), [v for pair in r.pairs for v in pair]) for r in batch]
    call = calls.import_dead_letters(
        dlq=keys.dlq(stream),
        audit=keys.audit_trail(stream),
        imported=keys.dlq_imported(stream),
        check=check,
        ttl_s=IMPORTED_TTL,
        record=[*op.entry_fields(), "stream", stream],
        entries=entries,
    )
    return await call(client)


def read_text(stream: IO[bytes], name: str) -> list[str]:
    """The lines of an export file; a file that is not UTF-8 is refused whole."""
    try:
        return stream.read().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{name} is not UTF-8 text ({exc}); nothing was imported") from None


def write_lines(path: Path, lines: Iterable[str], *, force: bool = False) -> int:
    """Write ``lines`` to ``path`` all or nothing: a temporary file in the same directory,
    fsynced, then renamed over ``path``. An existing ``path`` is refused unless ``force``;
    on any error ``path`` is untouched. The file is the owner's only (0600, as
    ``mkstemp`` creates it): dead letters hold payloads. Returns the number of lines written.
    """
    check_output(path, force=force)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for line in lines:
                out.write(line + "\n")
                count += 1
            out.flush()
            os.fsync(out.fileno())
        if not force and path.exists():  # created meanwhile by someone else
            raise ConfigError(f"{path} appeared while exporting: pass --force to overwrite it")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return count


def check_output(path: Path, *, force: bool = False) -> None:
    """Refuse, before any I/O, an output file that exists (unless ``force``) or whose
    directory is missing or not writable."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: name a file, e.g. {path / 'dlq.jsonl'}")
    if path.exists() and not force:
        raise ConfigError(f"{path} exists: pass --force to overwrite it, or pick a new name")
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: directory {parent} is not writable")
