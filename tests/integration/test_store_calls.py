"""Each typed script call against a real Redis: the result values really come out.

The fence stories: the owner's move is MOVED, a move by a consumer whose entry was
reclaimed is FENCED, a move of an entry acked already is NOT_PENDING, and only MOVED
changes anything.
"""

from __future__ import annotations

import uuid

import redis.asyncio
from redis.exceptions import NoScriptError

from redrive.store import calls
from redrive.store.calls import AckResult, Call, DeadLetterResult, Fence, HeartbeatResult
from redrive.store.channel import Channel
from redrive.store.schedule import unpack_strings
from redrive.store.scripts import Script, scripts


async def _delivered(r: redis.asyncio.Redis, stream: str, n: int = 1) -> list[bytes]:
    """``n`` entries of ``stream`` read by consumer ``mine`` of group ``g``."""
    await r.xgroup_create(stream, "g", id="0", mkstream=True)
    ids = [await r.xadd(stream, {"data": b"{}", "n": i}) for i in range(n)]
    await r.xreadgroup("g", "mine", {stream: ">"})
    return ids


async def _owner(r: redis.asyncio.Redis, stream: str, entry: bytes) -> bytes | None:
    rows = await r.xpending_range(stream, "g", entry, entry, 1)
    return rows[0]["consumer"] if rows else None


async def test_dead_letter_is_moved_by_its_owner_only(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream, dlq = f"{prefix}s", f"{prefix}dlq"
    mine, reclaimed, acked = await _delivered(aredis, stream, 3)
    await aredis.xclaim(stream, "g", "rescuer", 0, [reclaimed])
    await aredis.xack(stream, "g", acked)

    def move(entry: bytes) -> Call[DeadLetterResult]:
        return calls.dead_letter(stream=stream, dlq=dlq, group="g", consumer="mine",
                                 entry_id=entry, delete=False,
                                 fields=["data", "{}", "redrive-reason", "poison"])  # fmt: skip

    fenced = await move(reclaimed)(aredis)
    gone = await move(acked)(aredis)
    assert (fenced, gone) == (DeadLetterResult(Fence.FENCED, None),
                              DeadLetterResult(Fence.NOT_PENDING, None))  # fmt: skip
    assert await aredis.xlen(dlq) == 0
    assert await _owner(aredis, stream, reclaimed) == b"rescuer"

    moved = await move(mine)(aredis)
    assert moved.fence is Fence.MOVED and moved.dead_id is not None
    [(dead_id, fields)] = await aredis.xrange(dlq)
    assert dead_id == moved.dead_id
    # ARGV[5..] are the fields, all of them: no MAXLEN argument is eaten in between.
    assert fields == {b"data": b"{}", b"redrive-reason": b"poison"}
    assert await _owner(aredis, stream, mine) is None
    assert await aredis.xlen(stream) == 3  # delete=False: a source stream keeps its entries


async def test_dead_letter_from_a_retry_stream_deletes_the_entry(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}retry"
    [entry] = await _delivered(aredis, stream)
    call = calls.dead_letter(stream=stream, dlq=f"{prefix}dlq", group="g", consumer="mine",
                             entry_id=entry, delete=True, fields=["data", "{}"])  # fmt: skip
    assert (await call(aredis)).fence is Fence.MOVED
    assert await aredis.xlen(stream) == 0


async def test_schedule_retry_fence_outcomes(aredis: redis.asyncio.Redis, prefix: str) -> None:
    stream, due = f"{prefix}s", f"{prefix}due"
    mine, reclaimed, acked = await _delivered(aredis, stream, 3)
    await aredis.xclaim(stream, "g", "rescuer", 0, [reclaimed])
    await aredis.xack(stream, "g", acked)

    def retry(entry: bytes) -> Call[Fence]:
        return calls.schedule_retry(stream=stream, due=due, group="g", consumer="mine",
                                    entry_id=entry, due_ms=5000, delete=False,
                                    fields=["data", "{}", "redrive-attempt", "2"])  # fmt: skip

    assert await retry(reclaimed)(aredis) is Fence.FENCED
    assert await retry(acked)(aredis) is Fence.NOT_PENDING
    assert await aredis.zcard(due) == 0
    assert await retry(mine)(aredis) is Fence.MOVED
    [(member, score)] = await aredis.zrange(due, 0, -1, withscores=True)
    assert score == 5000
    assert unpack_strings(member) == [b"data", b"{}", b"redrive-attempt", b"2"]
    assert await _owner(aredis, stream, mine) is None


async def _ack_story(r: redis.asyncio.Redis, stream: str, n: int) -> None:
    ids = await _delivered(r, stream, n)
    reclaimed, acked, owned = ids[:2], ids[2:4], ids[4:]
    await r.xclaim(stream, "g", "rescuer", 0, reclaimed)
    await r.xack(stream, "g", *acked)
    call = calls.ack(stream=stream, group="g", consumer="mine", delete=True, ids=ids)
    assert await call(r) == AckResult(len(owned), reclaimed, acked)
    # Only the owned entries were acked and deleted; the reclaimed ones are the rescuer's.
    assert [eid for eid, _ in await r.xrange(stream)] == [*reclaimed, *acked]
    assert [await _owner(r, stream, eid) for eid in reclaimed] == [b"rescuer"] * 2


async def test_ack_sorts_a_small_batch_into_acked_fenced_and_gone(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    await _ack_story(aredis, f"{prefix}s", 6)  # <= 8 ids: one XPENDING per id


async def test_ack_sorts_a_large_batch_the_same_way(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    await _ack_story(aredis, f"{prefix}s", 20)  # > 8 ids: one XPENDING over the range


async def test_ack_of_a_batch_out_of_read_order_sorts_the_same(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    # The script's one XPENDING spans the batch's first to last id: a batch out of order
    # (lanes finish out of order) has ids outside that span, each checked on its own.
    stream = f"{prefix}s"
    ids = await _delivered(aredis, stream, 30)
    reclaimed, acked = [ids[0], ids[15]], [ids[29], ids[14]]
    await aredis.xclaim(stream, "g", "rescuer", 0, reclaimed)
    await aredis.xack(stream, "g", *acked)
    batch = [ids[10], *ids[20:], ids[0], *ids[1:10], *ids[11:20]]
    call = calls.ack(stream=stream, group="g", consumer="mine", delete=False, ids=batch)
    result = await call(aredis)
    assert result.fenced == [ids[0], ids[15]] and result.gone == [ids[29], ids[14]]
    assert result.acked == 26
    assert await aredis.xpending(stream, "g") == {
        "pending": 2, "min": ids[0], "max": ids[15], "consumers": [
            {"name": b"rescuer", "pending": 2}]}  # fmt: skip


async def test_renew_reports_the_entries_it_no_longer_owns(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}s"
    mine, reclaimed = await _delivered(aredis, stream, 2)
    await aredis.xclaim(stream, "g", "rescuer", 0, [reclaimed])
    call = calls.renew(stream=stream, group="g", consumer="mine", ids=[mine, reclaimed])
    assert await call(aredis) == [reclaimed]
    assert await _owner(aredis, stream, reclaimed) == b"rescuer"
    [row] = await aredis.xpending_range(stream, "g", mine, mine, 1)
    assert row["times_delivered"] == 1  # JUSTID: the lease is renewed, no delivery counted


async def test_retire_deletes_a_consumer_only_when_nothing_is_pending(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}s"
    [entry] = await _delivered(aredis, stream)
    retire = calls.retire(stream=stream, group="g", consumer="mine")
    assert await retire(aredis) is False
    await aredis.xack(stream, "g", entry)
    assert await retire(aredis) is True
    assert await aredis.xinfo_consumers(stream, "g") == []


async def test_promote_due_moves_what_is_due_and_tells_the_next_due_time(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream, due, retry = f"{prefix}s", f"{prefix}due", f"{prefix}retry"
    ids = await _delivered(aredis, stream, 4)
    for n, (entry, at) in enumerate(zip(ids, (100, 200, 300, 900), strict=True)):
        call = calls.schedule_retry(stream=stream, due=due, group="g", consumer="mine",
                                    entry_id=entry, due_ms=at, delete=False,
                                    fields=["n", str(n)])  # fmt: skip
        assert await call(aredis) is Fence.MOVED
    first = await calls.promote_due(due=due, retry=retry, now_ms=500, limit=2)(aredis)
    assert (first.moved, first.next_ms) == (2, 300.0)
    second = await calls.promote_due(due=due, retry=retry, now_ms=500, limit=2)(aredis)
    assert (second.moved, second.next_ms) == (1, 900.0)
    last = await calls.promote_due(due=due, retry=retry, now_ms=1000, limit=2)(aredis)
    assert (last.moved, last.next_ms) == (1, None)
    assert [f for _, f in await aredis.xrange(retry)] == [{b"n": b"%d" % n} for n in range(4)]


async def test_replay_moves_a_dead_letter_once(aredis: redis.asyncio.Redis, prefix: str) -> None:
    dlq, target, audit = f"{prefix}dlq", f"{prefix}t", f"{prefix}audit"
    dead_id = (await aredis.xadd(dlq, {"data": "{}"})).decode()

    def replay() -> Call[str | None]:
        return calls.replay(dlq=dlq, target=target, audit=audit, dead_id=dead_id,
                            fields=["data", "{}", "redrive-attempt", "1"],
                            record=["by", "ops"])  # fmt: skip

    new_id = await replay()(aredis)
    assert isinstance(new_id, str)
    [(got_id, fields)] = await aredis.xrange(target)
    assert got_id.decode() == new_id
    assert fields == {b"data": b"{}", b"redrive-attempt": b"1"}
    [(_, record)] = await aredis.xrange(audit)
    assert record == {b"by": b"ops", b"target-id": new_id.encode()}
    assert await replay()(aredis) is None  # gone: nothing written twice
    assert (await aredis.xlen(target), await aredis.xlen(audit)) == (1, 1)


async def test_purge_counts_only_what_it_deleted(aredis: redis.asyncio.Redis, prefix: str) -> None:
    dlq, audit = f"{prefix}dlq", f"{prefix}audit"
    ids = [(await aredis.xadd(dlq, {"n": n})).decode() for n in range(3)]
    await aredis.xdel(dlq, ids[0])
    deleted = await calls.purge(dlq=dlq, audit=audit, record=["by", "ops"], ids=ids)(aredis)
    assert deleted == 2
    [(_, record)] = await aredis.xrange(audit)
    assert record == {b"by": b"ops", b"deleted": b"2", b"ids": ",".join(ids).encode()}
    assert await calls.purge(dlq=dlq, audit=audit, record=[], ids=ids)(aredis) == 0


async def test_heartbeat_lease_claim_take_renew_release(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    lease = f"{prefix}lease"

    def beat(op: calls.LeaseOp, token: str, replacing: str | None = None) -> Call[HeartbeatResult]:
        return calls.heartbeat(lease=lease, op=op, token=token, ttl_ms=60_000,
                               replacing=replacing)  # fmt: skip

    assert await beat("claim", "h 1 a")(aredis) == HeartbeatResult(True)
    refused = await beat("claim", "h 2 b")(aredis)
    assert (refused.ours, refused.holder) == (False, "h 1 a")
    assert refused.ttl_ms is not None and 0 < refused.ttl_ms <= 60_000
    assert (await beat("take", "h 2 b", replacing="h 9 z")(aredis)).ours is False
    assert await beat("take", "h 2 b", replacing="h 1 a")(aredis) == HeartbeatResult(True)
    assert (await beat("renew", "h 1 a")(aredis)).holder == "h 2 b"
    assert await beat("release", "h 1 a")(aredis) == HeartbeatResult(False)
    assert await beat("release", "h 2 b")(aredis) == HeartbeatResult(True)
    assert await aredis.exists(lease) == 0


async def test_calls_go_out_in_one_channel_round_trip_and_parse_its_raw_replies(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream, dlq = f"{prefix}s", f"{prefix}dlq"
    acked, dead = await _delivered(aredis, stream, 2)
    await scripts().load_all(aredis)
    batch = [
        calls.ack(stream=stream, group="g", consumer="mine", delete=False, ids=[acked]),
        calls.dead_letter(stream=stream, dlq=dlq, group="g", consumer="mine", entry_id=dead,
                          delete=False, fields=["data", "{}"]),
    ]  # fmt: skip
    channel = Channel(aredis, stream)
    try:
        replies = await channel.roundtrip([c.command() for c in batch], deadline=5)
    finally:
        await channel.close()
    ack_result, dead_result = (c.parse(reply) for c, reply in zip(batch, replies, strict=True))
    assert ack_result == AckResult(1, [], [])
    assert isinstance(dead_result, DeadLetterResult) and dead_result.fence is Fence.MOVED
    assert await aredis.xlen(dlq) == 1


async def test_a_pipeline_queues_calls(aredis: redis.asyncio.Redis, prefix: str) -> None:
    stream = f"{prefix}s"
    [entry] = await _delivered(aredis, stream)
    await scripts().load_all(aredis)
    call = calls.renew(stream=stream, group="g", consumer="other", ids=[entry])
    pipe = aredis.pipeline(transaction=False)
    call.queue(pipe)
    [reply] = await pipe.execute()
    assert call.parse(reply) == [entry]


async def test_an_unknown_script_is_loaded_and_run_again(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    # A script source no server has seen: its SHA is unknown, as after a restart or a
    # flush, without flushing anything other tests rely on.
    stream = f"{prefix}s"
    await aredis.xgroup_create(stream, "g", id="0", mkstream=True)
    base = scripts().retire
    fresh = Script("retire", f"{base.source}\n-- {uuid.uuid4().hex}")
    built = calls.retire(stream=stream, group="g", consumer="nobody")
    call = Call(fresh, ("EVALSHA", fresh.sha, *built.command()[2:]), built.parse)
    channel = Channel(aredis, stream)
    try:
        [reply] = await channel.roundtrip([call.command()], deadline=5)
    finally:
        await channel.close()
    assert isinstance(reply, NoScriptError)  # a round trip hands NOSCRIPT to its caller
    assert await call(aredis) is True  # awaiting loads the script and runs it again
    assert await aredis.script_exists(fresh.sha) == [True]


async def test_a_retry_without_delay_goes_straight_to_the_retry_stream(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream, due, retry = f"{prefix}s", f"retry:{{{prefix}s}}:g:due", f"retry:{{{prefix}s}}:g"
    [mine, reclaimed] = await _delivered(aredis, stream, 2)
    await aredis.xclaim(stream, "g", "rescuer", 0, [reclaimed])

    def now(entry: bytes) -> Call[Fence]:
        return calls.schedule_retry(stream=stream, due=due, group="g", consumer="mine",
                                    entry_id=entry, due_ms=0, delete=False, retry=retry,
                                    fields=["data", "{}", "redrive-attempt", "2"])  # fmt: skip

    assert await now(reclaimed)(aredis) is Fence.FENCED
    assert await aredis.xlen(retry) == 0
    assert await now(mine)(aredis) is Fence.MOVED
    [(_, fields)] = await aredis.xrange(retry)
    assert fields == {b"data": b"{}", b"redrive-attempt": b"2"}
    assert await aredis.zcard(due) == 0  # never scheduled
    assert await _owner(aredis, stream, mine) is None  # acked in the same step
