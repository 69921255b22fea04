"""dlq.newest: newest-first pages across DLQs, resumable, with a bounded read per page."""

from __future__ import annotations

import redis

from redrive.core.ids import id_key
from redrive.dlq import connect
from redrive.dlq.audit import Operation, recent, record
from redrive.dlq.newest import newest
from redrive.dlq.query import Filter
from tests.web.conftest import seed


async def _all_pages(url: str, flt: Filter, limit: int, budget: int) -> tuple[list[str], int]:
    client = connect(url)
    try:
        out: list[str] = []
        cursor, pages = None, 0
        while True:
            page = await newest(client, flt, limit=limit, cursor=cursor, budget=budget)
            pages += 1
            out += [e.ref for e in page.entries]
            cursor = page.cursor
            if cursor is None:
                return out, pages
    finally:
        await client.aclose()


async def test_pages_merge_streams_newest_first(web_url: str, r: redis.Redis, prefix: str) -> None:
    a, b = f"{prefix}a", f"{prefix}b"
    refs = [f"{a}@{i}" for i in seed(r, a, 7)] + [f"{b}@{i}" for i in seed(r, b, 6)]
    refs += [f"{a}@{i}" for i in seed(r, a, 5, start=7)]
    # Both streams get an entry with one and the same id: ordered by stream, descending.
    for s in (a, b):
        r.xadd(f"dlq:{{{s}}}", {"x": "1"}, id="9999999999999-0")
    refs += [f"{b}@9999999999999-0", f"{a}@9999999999999-0"]
    expected = sorted(refs, key=lambda ref: (id_key(ref.rsplit("@", 1)[1]), ref), reverse=True)
    got, _ = await _all_pages(web_url, Filter(streams=(a, b)), limit=4, budget=100)
    assert got == expected  # every entry once, in order, across page boundaries


async def test_a_rare_filter_pages_within_its_budget(
    web_url: str, r: redis.Redis, prefix: str
) -> None:
    stream = f"{prefix}rare"
    seed(r, stream, 2, reason="poison")
    seed(r, stream, 60, start=2)
    client = connect(web_url)
    try:
        page = await newest(client, Filter(streams=(stream,), reason="poison"), limit=5, budget=20)
        assert page.entries == [] and page.partial and page.scanned == 20
    finally:
        await client.aclose()
    got, pages = await _all_pages(web_url, Filter(streams=(stream,), reason="poison"), 5, 20)
    assert len(got) == 2 and pages == 4  # 62 entries read 20 at a time


async def test_audit_recent_is_newest_first(web_url: str) -> None:
    client = connect(web_url)
    try:
        first, second = Operation.start("replay", by="a"), Operation.start("purge", by="b")
        await record(client, first, count=1, streams=["s"])
        await record(client, second, count=2, streams=["s"])
        shown = await recent(client, limit=2)
        assert [x["op"] for x in shown] == [second.op, first.op]
        assert shown[0]["by"] == "b" and shown[0]["count"] == "2"
    finally:
        await client.aclose()
