"""The read model on real Redis: one entry in each place, moved by redrive's own scripts,
and a retry that stays ``retrying`` while it moves from the schedule to the retry stream."""

from __future__ import annotations

import json
import time

import redis
import redis.asyncio

from redrive.core.message import Message
from redrive.core.records import Failure, dead_record, retry_record
from redrive.store import calls
from redrive.store.keys import StreamKeys
from redrive.store.schedule import unpack_strings
from redrive.verify import (
    ACKED,
    DEAD,
    GONE,
    PENDING,
    RETRYING,
    UNREAD,
    audit_stream,
    locate,
    read_snapshot,
    reconcile,
)

FAILURE = Failure("builtins.TimeoutError", "transient", "slow", "", 1, "c1", 1.0)
FAR = 2**52  # a due time that never comes


def _msg(k: StreamKeys, entry_id: str) -> Message:
    return Message(stream=k.stream, id=entry_id, fields={b"data": b"{}"})


async def _schedule(a: redis.asyncio.Redis, k: StreamKeys, entry_id: str, due_ms: int) -> None:
    fields = retry_record(_msg(k, entry_id), FAILURE, group=k.group, next_attempt=2,
                          due_ms=due_ms, delay_ms=0)  # fmt: skip
    call = calls.schedule_retry(
        stream=k.stream, due=k.due, group=k.group, consumer="c1",
        entry_id=entry_id, due_ms=due_ms, delete=False, fields=fields,
    )  # fmt: skip
    assert await call(a) is calls.Fence.MOVED


async def _dead_letter(a: redis.asyncio.Redis, k: StreamKeys, entry_id: str) -> None:
    fields = dead_record(_msg(k, entry_id), FAILURE, group=k.group, reason="poison")
    call = calls.dead_letter(stream=k.stream, dlq=k.dlq, group=k.group, consumer="c1",
                             entry_id=entry_id, delete=False, fields=fields)  # fmt: skip
    assert (await call(a)).fence is calls.Fence.MOVED


async def _promote(a: redis.asyncio.Redis, k: StreamKeys) -> int:
    now_ms = int(time.time() * 1000)
    result = await calls.promote_due(due=k.due, retry=k.retry, now_ms=now_ms, limit=10)(a)
    return result.moved


async def _arrange(r: redis.Redis, a: redis.asyncio.Redis, k: StreamKeys) -> dict[str, str]:
    """Seven entries: acked, dead, scheduled, pending, trimmed pending, unread and one more
    scheduled retry to move into the retry stream during the test."""
    ids = [r.xadd(k.stream, {"data": json.dumps({"n": n})}).decode() for n in range(7)]
    r.xgroup_create(k.stream, k.group, id="0")
    r.xreadgroup(k.group, "c1", {k.stream: ">"}, count=6)
    r.xack(k.stream, k.group, ids[0])
    await _dead_letter(a, k, ids[1])
    await _schedule(a, k, ids[2], FAR)
    await _schedule(a, k, ids[5], int(time.time() * 1000) - 1)  # due already
    r.xdel(k.stream, ids[4])
    names = ("acked", "dead", "scheduled", "pending", "trimmed", "moving", "unread")
    return dict(zip(names, ids, strict=True))


async def test_every_entry_is_in_its_place_and_a_moving_retry_is_always_retrying(
    r: redis.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    k = StreamKeys.of(f"{prefix}orders", "g")
    placed = await _arrange(r, aredis, k)
    before = read_snapshot(r, k)
    promoted = await _promote(aredis, k)
    after = read_snapshot(r, k)

    assert promoted == 1
    assert r.zcard(k.due) == 1 and r.xlen(k.retry) == 1  # it did move
    for snap in (before, after):
        where = {name: snap.place(i) for name, i in placed.items() if name != "trimmed"}
        assert where == {"acked": ACKED, "dead": DEAD, "scheduled": RETRYING,
                         "pending": PENDING, "moving": RETRYING, "unread": UNREAD}  # fmt: skip
        assert snap.reasons(placed["dead"]) == ["poison"]
        assert snap.pending == {placed["pending"], placed["trimmed"]}
        assert not any(len(snap.places(i)) > 1 for i in placed.values())


async def test_audit_reconcile_and_locate_read_the_same_places(
    r: redis.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    k = StreamKeys.of(f"{prefix}orders", "g")
    placed = await _arrange(r, aredis, k)
    assert await _promote(aredis, k) == 1
    r.xgroup_create(k.retry, k.group, id="0")
    r.xreadgroup(k.group, "c2", {k.retry: ">"})  # the retry is delivered: pending there
    [retry_id] = [i.decode() for i, _ in r.xrange(k.retry)]
    r.xdel(k.retry, retry_id)  # ... and its entry trimmed away

    (audit,) = audit_stream(r, k.stream)
    report = reconcile(r, k.stream, k.group, list(placed.values()), {placed["acked"]: 1})
    where = locate(r, k, [placed["trimmed"], placed["acked"], placed["unread"]])

    # The retry whose entry was trimmed is nowhere now: acked with no outcome, a loss.
    assert dict(audit.counts) == {ACKED: 2, DEAD: 1, RETRYING: 1, PENDING: 1, UNREAD: 1}
    assert audit.entries == 6
    assert audit.trimmed_pending == [placed["trimmed"]]
    assert audit.trimmed_retry_pending == [retry_id]
    assert not audit.ok
    assert (report.succeeded, report.dead, report.pending) == (1, {"poison": 1}, 4)
    assert report.lost == 1 and report.lost_sample == (placed["moving"],)
    assert where == {placed["trimmed"]: PENDING, placed["acked"]: ACKED,
                     placed["unread"]: UNREAD}  # fmt: skip
    r.xack(k.stream, k.group, placed["trimmed"])
    assert locate(r, k, [placed["trimmed"]]) == {placed["trimmed"]: GONE}


async def test_scheduled_retries_can_be_read_back(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    # The read model decodes the retry schedule (msgpack made by Lua) without msgpack.
    due = prefix + "due"
    packed = await aredis.eval(
        "return cmsgpack.pack({'data', ARGV[1], 'redrive-origin-id', '1-0'})", 0, "x" * 300
    )
    await aredis.zadd(due, {packed: 1})
    assert unpack_strings(packed) == [b"data", b"x" * 300, b"redrive-origin-id", b"1-0"]
