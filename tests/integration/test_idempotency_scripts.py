"""The idempotency scripts on their own: claims in one hash, done marks in one sorted set.

A group's state is two keys (``store/keys.py``), whatever the number of messages: the
claims hash (key -> ``<until ms>:<consumer>:<entry id>``) and the done set (key -> when
the mark ends). Leases and TTLs are measured on the server's clock.
"""

from __future__ import annotations

import asyncio

import redis.asyncio

from redrive.store import idempotency as calls
from redrive.store.idempotency import Claim, Committed, Effect
from redrive.store.keys import idempotency_claims, idempotency_done
from tests.integration.helpers import held_claims


async def _server_ms(r: redis.asyncio.Redis) -> int:
    seconds, micros = await r.time()
    return int(seconds * 1000 + micros // 1000)


async def _claim(
    r: redis.asyncio.Redis, stream: str, consumer: str, pairs: list[tuple[str, str]], lease_ms: int
) -> list[calls.ClaimResult]:
    call = calls.claim(claims=idempotency_claims(stream, "g"), done=idempotency_done(stream, "g"),
                       consumer=consumer, keys=[k for k, _ in pairs],
                       entry_ids=[e for _, e in pairs], lease_ms=lease_ms)  # fmt: skip
    return await call(r)


async def _delivered(r: redis.asyncio.Redis, stream: str, n: int) -> list[bytes]:
    await r.xgroup_create(stream, "g", id="0", mkstream=True)
    pipe = r.pipeline(transaction=False)
    for _ in range(n):
        pipe.xadd(stream, {"data": b"{}"})
    ids: list[bytes] = await pipe.execute()
    await r.xreadgroup("g", "mine", {stream: ">"})
    return ids


def _ack_done(stream: str, ids: list[bytes], keys: list[str], ttl_ms: int | None) -> object:
    return calls.ack_done(stream=stream, done=idempotency_done(stream, "g"),
                          claims=idempotency_claims(stream, "g"), group="g", consumer="mine",
                          delete=False, ttl_ms=ttl_ms, ids=ids, keys=keys)  # fmt: skip


async def test_a_claim_is_free_own_busy_or_done(aredis: redis.asyncio.Redis, prefix: str) -> None:
    stream = f"{prefix}s"
    got = await _claim(aredis, stream, "a", [("k1", "1-1"), ("k2", "1-2")], 60_000)
    assert [g.claim for g in got] == [Claim.CLAIMED, Claim.CLAIMED]
    # The same run asks again (re-read after a restart): still its own, lease renewed.
    [again] = await _claim(aredis, stream, "a", [("k1", "1-1")], 60_000)
    assert again.claim is Claim.CLAIMED
    # Another consumer, or another entry of the same key in the same consumer: busy, with
    # how long the claim still holds.
    other, same_consumer = await _claim(aredis, stream, "b", [("k1", "2-1")], 60_000) + (
        await _claim(aredis, stream, "a", [("k1", "9-9")], 60_000)
    )
    for busy in (other, same_consumer):
        assert busy.claim is Claim.BUSY and 59_000 < busy.busy_ms <= 60_000
    value = await aredis.hget(idempotency_claims(stream, "g"), "k1")
    until, run = value.decode().split(":", 1)
    assert run == "a:1-1" and 59_000 < int(until) - await _server_ms(aredis) <= 60_000

    await aredis.zadd(idempotency_done(stream, "g"), {"k2": "+inf"})
    [done] = await _claim(aredis, stream, "b", [("k2", "2-2")], 60_000)
    assert done.claim is Claim.DONE


async def test_the_claims_hash_is_a_hash_table_from_its_first_claim(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    # A listpack hash (up to 512 fields) is searched field by field: 2.6 us a field.
    stream = f"{prefix}s"
    await _claim(aredis, stream, "a", [("k", "1-1")], 60_000)
    assert await aredis.object("encoding", idempotency_claims(stream, "g")) == b"hashtable"


async def test_two_entries_of_one_key_in_one_call_claim_it_once(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    got = await _claim(aredis, f"{prefix}s", "a", [("k", "1-1"), ("k", "1-2")], 60_000)
    assert got[0].claim is Claim.CLAIMED and got[1].claim is Claim.BUSY


async def test_an_ended_claim_is_free_and_release_frees_only_its_own(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream, claims = f"{prefix}s", idempotency_claims(f"{prefix}s", "g")
    await _claim(aredis, stream, "a", [("short", "1-1"), ("long", "1-2")], 1)
    await asyncio.sleep(0.01)
    [taken] = await _claim(aredis, stream, "b", [("short", "2-1")], 60_000)
    assert taken.claim is Claim.CLAIMED  # a's lease ended
    await _claim(aredis, stream, "a", [("long", "1-2")], 60_000)

    release = calls.release(claims=claims, consumer="a", keys=["short", "long"],
                            entry_ids=["1-1", "1-2"])  # fmt: skip
    assert await release(aredis) == 1  # "short" is b's now: left as it is
    assert await held_claims(aredis, claims) == [b"short"]


async def test_claims_whose_run_never_ends_are_swept_away(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    # Entries trimmed before they ran again leave their claims: each claim call drops up
    # to two ended ones, chosen at random, so they do not pile up.
    stream, claims = f"{prefix}s", idempotency_claims(f"{prefix}s", "g")
    await _claim(aredis, stream, "a", [(f"gone-{i}", f"1-{i}") for i in range(10)], 1)
    await asyncio.sleep(0.01)
    for _ in range(200):  # each call samples 2 of 11 fields: all 10 are found long before
        [got] = await _claim(aredis, stream, "a", [("live", "2-1")], 60_000)
        assert got.claim is Claim.CLAIMED
        if await held_claims(aredis, claims) == [b"live"]:
            break
    assert await held_claims(aredis, claims) == [b"live"]  # the live claim is kept


async def test_ack_done_marks_done_drops_the_claims_and_forgets_ended_marks(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}s"
    done, claims = idempotency_done(stream, "g"), idempotency_claims(stream, "g")
    ids = await _delivered(aredis, stream, 4)
    keys = ["k0", "k1", "k2", "k3"]
    await _claim(aredis, stream, "mine", list(zip(keys, [i.decode() for i in ids], strict=True)),
                 60_000)  # fmt: skip
    result = await _ack_done(stream, ids[:2], keys[:2], ttl_ms=1)(aredis)  # type: ignore[operator]
    assert result.acked == 2 and await held_claims(aredis, claims) == [b"k2", b"k3"]
    assert await aredis.zcard(done) == 2
    await asyncio.sleep(0.01)  # k0 and k1's marks end
    result = await _ack_done(stream, ids[2:], keys[2:], ttl_ms=None)(aredis)  # type: ignore[operator]
    assert result.acked == 2 and await held_claims(aredis, claims) == []
    assert await aredis.zrange(done, 0, -1, withscores=True) == [
        (b"k2", float("inf")), (b"k3", float("inf"))]  # fmt: skip
    assert (await aredis.xpending(stream, "g"))["pending"] == 0


async def test_scripts_take_more_keys_than_one_lua_unpack_holds(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    # Lua's unpack stops near 8,000 values: the scripts call in chunks of 1,000.
    stream = f"{prefix}s"
    n = 9_000
    ids = await _delivered(aredis, stream, n)
    keys = [f"k{i}" for i in range(n)]
    got = await _claim(aredis, stream, "mine", list(zip(keys, [i.decode() for i in ids],
                                                          strict=True)), 60_000)  # fmt: skip
    assert {g.claim for g in got} == {Claim.CLAIMED}
    assert len(await held_claims(aredis, idempotency_claims(stream, "g"))) == n
    result = await _ack_done(stream, ids, keys, ttl_ms=60_000)(aredis)  # type: ignore[operator]
    assert result.acked == n and await aredis.zcard(idempotency_done(stream, "g")) == n
    assert await held_claims(aredis, idempotency_claims(stream, "g")) == []
    got = await _claim(aredis, stream, "mine", [(k, "9-9") for k in keys], 60_000)
    assert {g.claim for g in got} == {Claim.DONE}


async def test_commit_applies_effects_once_per_key(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}s"
    ids = await _delivered(aredis, stream, 2)
    counter = f"{prefix}count"
    keyed = (idempotency_done(stream, "g"), idempotency_claims(stream, "g"), "order-1")
    outcomes = []
    for entry_id in ids:  # two deliveries of one order
        call = calls.commit(stream=stream, group="g", consumer="mine", delete=False,
                            entry_id=entry_id, idempotency=keyed, ttl_ms=60_000,
                            effects=[Effect("INCRBY", counter, (1,))])  # fmt: skip
        outcomes.append(await call(aredis))
    assert outcomes == [Committed.COMMITTED, Committed.DUPLICATE]
    assert await aredis.get(counter) == b"1"
    assert (await aredis.xpending(stream, "g"))["pending"] == 0  # both acked
