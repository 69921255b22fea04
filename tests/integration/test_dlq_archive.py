"""Export → purge → import round-trips every field byte for byte; a corrupt import file
is refused whole; purges and imports are audited; retention trims and warns."""

from __future__ import annotations

import json
from pathlib import Path

import redis.asyncio

from redrive import dlq
from redrive.store import keys
from tests.integration.dlq_support import record, seed
from tests.integration.test_dlq_cli import cli

BINARY = {b"data": b'{"order_id": 3}', b"\xffraw": b"\x00\xfe\xff not utf-8 \x80"}


async def test_export_purge_import_round_trips_byte_identical_fields(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, tmp_path: Path
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 3)
    await seed(aredis, stream, 1, start=3, fields=BINARY)
    # Repeated field names survive too (a dict would fold them).
    await aredis.execute_command("XADD", keys.dlq(stream), "*", "data", "a", "data", "b",
                                 *record(stream, "1-9"))  # fmt: skip
    client = dlq.connect(redis_url)
    before = [e.pairs for e in (await dlq.list_dead_letters(client, dlq.Filter((stream,)))).entries]
    archive = tmp_path / "dlq.jsonl"

    code, _, err = await cli(redis_url, "dlq", "export", stream, "-o", str(archive))
    assert code == 0 and "exported 5" in err
    code, out, _ = await cli(redis_url, "dlq", "purge", stream, "--all", "--yes", "--note", "t")
    assert code == 0 and "deleted 5" in out
    assert await aredis.xlen(keys.dlq(stream)) == 0
    code, out, _ = await cli(redis_url, "dlq", "import", str(archive))
    assert code == 0 and f"imported 5 dead letters into {stream}" in out

    after = [e.pairs for e in (await dlq.list_dead_letters(client, dlq.Filter((stream,)))).entries]
    assert after == before
    assert (b"\xffraw", b"\x00\xfe\xff not utf-8 \x80") in after[3]
    data = [v for n, v in after[4] if n == b"data"]
    assert data == [b"a", b"b", b'{"order_id": 1}'], "repeated names, in order"
    actions = [f[b"action"] for _, f in await aredis.xrange(keys.AUDIT)]
    assert b"purge" in actions and b"import" in actions
    purged = [
        f for _, f in await aredis.xrange(keys.audit_trail(stream)) if f[b"action"] == b"purge"
    ]
    assert purged[0][b"deleted"] == b"5" and purged[0][b"by"]
    await client.aclose()


async def test_import_with_a_corrupt_line_imports_nothing(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, tmp_path: Path
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 2)
    archive = tmp_path / "dlq.jsonl"
    code, _, _ = await cli(redis_url, "dlq", "export", stream, "-o", str(archive))
    lines = archive.read_text().splitlines()
    other = f"{prefix}other"
    good = json.loads(lines[0]) | {"stream": other}
    archive.write_text(json.dumps(good) + "\n" + '{"v": 1, "stream": "x", "id": "1-0", "fie\n')

    code, _, err = await cli(redis_url, "dlq", "import", str(archive))
    assert code == 2 and "line 2" in err and "nothing was imported" in err
    assert not await aredis.exists(keys.dlq(other))
    archive.write_text(json.dumps(good | {"fields": [["data", {"b64": "!!"}]]}) + "\n")
    code, _, err = await cli(redis_url, "dlq", "import", str(archive))
    assert code == 2 and "line 1" in err and "base64" in err


async def test_retention_evicts_by_age_and_length_and_warns_first(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    now = 1_800_000_000_000
    for i, age_s in enumerate([7200, 3500, 3300, 60, 30]):
        flat = record(stream, f"1-{i}")
        await aredis.execute_command("XADD", keys.dlq(stream), f"{now - age_s * 1000}-0", *flat)
    client = dlq.connect(redis_url)

    done = await dlq.apply_retention(
        client, stream, dlq.Retention(max_age=3600), now_ms=now, by="w1"
    )
    assert (done.evicted, done.expiring) == (1, 2), "7200 s gone; 3500 s and 3300 s warned"
    gauges = await aredis.hgetall(keys.dlq_retention(stream))
    assert gauges[b"expiring"] == b"2" and gauges[b"evicted"] == b"1"
    capped = await dlq.apply_retention(client, stream, dlq.Retention(max_len=2), now_ms=now)
    assert capped.evicted == 2
    left = [int(i.decode().partition("-")[0]) for i, _ in await aredis.xrange(keys.dlq(stream))]
    assert left == [now - 60_000, now - 30_000], "the newest are kept"
    trail = [f for _, f in await aredis.xrange(keys.audit_trail(stream))]
    assert [(f[b"action"], f[b"deleted"]) for f in trail] == [
        (b"retention", b"1"),
        (b"retention", b"2"),
    ]
    await client.aclose()
