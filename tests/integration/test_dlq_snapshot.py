"""Snapshots: a preview binds the exact refs its filter selected when it was taken."""

from __future__ import annotations

import pytest
import redis.asyncio

from redrive import dlq
from redrive.dlq import snapshot
from redrive.store import keys
from tests.integration.dlq_support import seed


async def test_take_binds_the_selection_of_now_and_load_gives_it_back(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    orders, payments = f"{prefix}orders", f"{prefix}payments"
    first = await seed(aredis, orders, 5)
    other = await seed(aredis, payments, 2)
    await seed(aredis, orders, 2, start=5, reason="poison")  # excluded by the filter
    client = dlq.connect(redis_url)
    flt = dlq.Filter(streams=(orders, payments), reason="max_retries_exceeded")

    preview = await snapshot.take(client, flt, sample=3)
    await seed(aredis, orders, 3, start=10)  # died after the preview

    expected = [f"{orders}@{i}" for i in first] + [f"{payments}@{i}" for i in other]
    assert preview.count == 7 and preview.by_stream == {orders: 5, payments: 2}
    assert await snapshot.refs(client, preview.id) == expected, "the refs of then, in order"
    assert await snapshot.refs(client, preview.id, 5, 6) == expected[5:]
    # Newest by id; two streams may hand out one id (same millisecond): then by stream.
    newest = sorted(expected, key=lambda r: (_key(r.rpartition("@")[2]), r.rpartition("@")[0]),
                    reverse=True)[:3]  # fmt: skip
    assert [e.ref for e in preview.sample] == newest, "the newest three, newest first"
    assert "reason=max_retries_exceeded" in preview.filter
    loaded = await snapshot.load(client, preview.id)
    assert loaded == preview, "the same preview, sample payloads byte for byte"
    ttl = await aredis.ttl(keys.snapshot_refs(preview.id))
    assert 0 < ttl <= 3600
    await client.aclose()


async def test_a_large_selection_is_stored_in_chunks(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    ids = await seed(aredis, stream, 2 * snapshot.CHUNK + 7)
    client = dlq.connect(redis_url)
    preview = await snapshot.take(client, dlq.Filter(streams=(stream,)), sample=0)
    assert preview.count == len(ids) and preview.sample == ()
    assert await snapshot.refs(client, preview.id) == [f"{stream}@{i}" for i in ids]
    await client.aclose()


async def test_an_unknown_or_expired_snapshot_says_so(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 2)
    client = dlq.connect(redis_url)
    preview = await snapshot.take(client, dlq.Filter(streams=(stream,)), ttl=1)
    await aredis.delete(keys.snapshot(preview.id))  # as its TTL would
    for name in (preview.id, "never-taken", "../../etc"):
        with pytest.raises(snapshot.UnknownSnapshotError, match="snapshot"):
            await snapshot.load(client, name)
        with pytest.raises(snapshot.UnknownSnapshotError):
            await snapshot.refs(client, name)
    await client.aclose()


async def test_a_failed_take_leaves_nothing_behind(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    client = dlq.connect(redis_url)
    with pytest.raises(dlq.UnknownStreamError):
        await snapshot.take(client, dlq.Filter(streams=(f"{prefix}nowhere",)))
    await client.aclose()


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)
