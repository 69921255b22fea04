"""Operator commands whose keys live in several slots of a real Redis Cluster (issue 16).

``dlq import`` of a file naming several streams (one with more than a batch of 500) writes
each record once, indexed and audited, also when run again or twice at once; ``dlq replay
--to T`` with ``T`` in another slot than ``dlq:{S}`` moves each dead letter exactly once,
also when a crash stopped an earlier replay between its copy and its delete.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

from redrive.dlq import export_import
from redrive.store import calls, keys
from redrive.store.cluster import same_slot
from redrive.store.connection import async_client, sync_client
from tests.integration.dlq_support import record, run_cli

T = TypeVar("T")
SIZES = {"orders": 620, "payments": 30, "refunds": 3}


def export_file(path: Path, prefix: str) -> dict[str, int]:
    """An export file of ``SIZES`` dead letters per stream, the streams interleaved (so a
    batch of 500 records holds several); returns stream -> records."""
    per_stream = {f"{prefix}{name}": n for name, n in SIZES.items()}
    lines = []
    for i in range(max(per_stream.values())):
        for stream, n in per_stream.items():
            if i < n:
                flat = record(stream, f"1-{i}")
                pairs = [[export_import.encode_bytes(_b(flat[j])),
                          export_import.encode_bytes(_b(flat[j + 1]))]
                         for j in range(0, len(flat), 2)]  # fmt: skip
                lines.append(json.dumps({"v": 1, "stream": stream, "id": f"1-{i}",
                                         "fields": pairs}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return per_stream


@pytest.fixture
def rc(redis_url: str) -> Iterator[redis.Redis]:
    """A blocking cluster client (bytes replies) for arranging and inspecting."""
    client = sync_client(redis_url)
    try:
        yield client
    finally:
        client.close()


def seed(client: redis.Redis, stream: str, n: int) -> list[str]:
    """``n`` dead letters of ``stream`` (origin ids ``1-<i>``), indexed; their DLQ ids."""
    ids = [client.execute_command("XADD", keys.dlq(stream), "*", *record(stream, f"1-{i}"))
           for i in range(n)]  # fmt: skip
    client.sadd(keys.STREAMS_INDEX, stream)
    return [i.decode() for i in ids]


def run(client: redis.Redis, call: calls.Call[T]) -> T:
    """Run a script call on a blocking client (EVAL: the script may not be loaded)."""
    return call.parse(client.eval(call.script.source, len(call.keys), *call.keys, *call.args))


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _imported_ids(client: redis.Redis, stream: str) -> list[str]:
    """Every id the audit trail of ``stream`` says an import wrote."""
    ids: list[str] = []
    for _, fields in client.xrange(keys.audit_trail(stream)):
        if fields[b"action"] == b"import":
            ids += fields[b"ids"].decode().split(",")
    return ids


def test_a_multi_stream_import_writes_every_record_once_indexed_and_audited(
    redis_url: str, rc: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    archive = tmp_path / "dlq.jsonl"
    per_stream = export_file(archive, prefix)
    assert len({key_slot(keys.dlq(s).encode()) for s in per_stream}) > 1, "several slots"
    total = sum(per_stream.values())

    code, out, err = run_cli(["--redis-url", redis_url, "dlq", "import", str(archive)])
    assert (code, err) == (0, ""), err
    assert f"imported {total}, 0 already present" in out

    code, out, err = run_cli(["--redis-url", redis_url, "dlq", "import", str(archive), "--json"])
    assert (code, err) == (0, ""), err
    assert json.loads(out.splitlines()[-1]) == {
        "summary": "import", "imported": 0, "already_present": total}  # fmt: skip

    for stream, n in per_stream.items():
        entries = rc.xrange(keys.dlq(stream))
        origins = [f[b"redrive-origin-id"] for _, f in entries]
        assert sorted(origins) == sorted(f"1-{i}".encode() for i in range(n)), "each once"
        assert sorted(_imported_ids(rc, stream)) == sorted(i.decode() for i, _ in entries)
    # No STREAM named: stats and list read the stream index, as an operator's would.
    code, out, err = run_cli(["--redis-url", redis_url, "dlq", "stats", "--json"])
    assert code == 0, err
    counted = json.loads(out)["streams"]
    assert {s: counted.get(s) for s in per_stream} == per_stream, "indexed and counted"
    code, out, err = run_cli(["--redis-url", redis_url, "dlq", "list", "--json", "--limit", "5000"])
    assert code == 0, err
    listed = [json.loads(line)["stream"] for line in out.splitlines()]
    assert {s: listed.count(s) for s in per_stream} == per_stream
    summaries = [f for _, f in rc.xrange(keys.AUDIT) if f[b"action"] == b"import"]
    mine = [f for f in summaries if f[b"streams"].decode().startswith(prefix)]
    assert [int(f[b"count"]) for f in mine] == [total], "one summary of what was written"


async def test_two_imports_of_one_file_at_once_write_each_record_once(
    redis_url: str, aredis: redis.asyncio.Redis, prefix: str, tmp_path: Path
) -> None:
    archive = tmp_path / "dlq.jsonl"
    per_stream = export_file(archive, prefix)
    records = export_import.parse_file(archive.read_text().splitlines())
    other = async_client(redis_url)
    try:
        first, second = await asyncio.gather(
            export_import.import_records(aredis, records),
            export_import.import_records(other, records),
        )
    finally:
        await other.aclose()

    assert first.total_imported + second.total_imported == len(records)
    assert first.total_present + second.total_present == len(records)
    for stream, n in per_stream.items():
        assert await aredis.xlen(keys.dlq(stream)) == n


def _other_slot(stream: str, name: str) -> str:
    target = name
    while same_slot(keys.dlq(stream), target):
        target += "x"
    return target


def test_replay_to_another_slot_moves_each_dead_letter_exactly_once(
    redis_url: str, rc: redis.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    dead = seed(rc, stream, 4)
    target = _other_slot(stream, f"{prefix}quarantine")

    code, out, err = run_cli(
        ["--redis-url", redis_url, "dlq", "replay", stream, "--all", "--to", target, "--json"]
    )

    assert code == 0, err
    moved = {row["id"]: row["target_id"] for row in map(json.loads, out.splitlines())
             if row.get("action") == "replayed"}  # fmt: skip
    assert sorted(moved) == sorted(dead)
    copies = rc.xrange(target)
    assert sorted(f[b"redrive-replayed-from"].decode() for _, f in copies) == sorted(dead)
    assert sorted(i.decode() for i, _ in copies) == sorted(moved.values())
    assert rc.xlen(keys.dlq(stream)) == 0
    trail = [f for _, f in rc.xrange(keys.audit_trail(stream))]
    assert sorted((f[b"dlq-id"].decode(), f[b"target-id"].decode()) for f in trail) == sorted(
        moved.items()
    )
    assert {f[b"target"].decode() for f in trail} == {target}
    assert rc.exists(keys.replay_moving(stream)) == 0, "no move left unfinished"
    markers = [keys.replay_copy(target, f"{stream}@{i}") for i in dead]
    assert all(0 < rc.ttl(m) <= 86_400 for m in markers), "copy markers expire"
    # A concurrent replay of the same entry that began before the delete reaches its
    # copy step late: it finds the copy and adds nothing.
    late = calls.replay_copy(target=target, marker=markers[0], fields=["data", "{}"])
    assert run(rc, late) == moved[dead[0]]
    assert rc.xlen(target) == len(dead)


def test_a_replay_stopped_between_copy_and_delete_finishes_on_the_next_run(
    redis_url: str, rc: redis.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    first, *rest = seed(rc, stream, 3)
    target = _other_slot(stream, f"{prefix}quarantine")
    later = _other_slot(stream, f"{prefix}elsewhere")
    # What a crash after the copy step leaves: the copy in the target, the dead letter
    # still in the DLQ, the move noted on both sides.
    begin = calls.replay_begin(
        dlq=keys.dlq(stream), moving=keys.replay_moving(stream), dead_id=first, target=target
    )
    assert run(rc, begin) == target
    copy = calls.replay_copy(
        target=target, marker=keys.replay_copy(target, f"{stream}@{first}"),
        fields=["data", "{}", "redrive-replayed-from", first],
    )  # fmt: skip
    copy_id = run(rc, copy)

    code, out, err = run_cli(
        ["--redis-url", redis_url, "dlq", "replay", stream, "--all", "--to", later, "--json"]
    )

    assert code == 0, err
    rows = [row for row in map(json.loads, out.splitlines()) if row.get("action") == "replayed"]
    where = {row["id"]: (row["target"], row["target_id"]) for row in rows}
    assert where[first] == (target, copy_id), "the begun move ends where it began, once"
    assert [i.decode() for i, _ in rc.xrange(target)] == [copy_id]
    assert sorted(f[b"redrive-replayed-from"].decode() for _, f in rc.xrange(later)) == (
        sorted(rest)
    )
    assert rc.xlen(keys.dlq(stream)) == 0
    trail = [f for _, f in rc.xrange(keys.audit_trail(stream))]
    assert sorted(f[b"dlq-id"].decode() for f in trail) == sorted([first, *rest]), "once each"
