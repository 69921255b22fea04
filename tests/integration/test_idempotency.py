"""Exactly-once effects: idempotency claims before a run, the done mark fused with the ack."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
import redis
import redis.asyncio
from prometheus_client import generate_latest

from redrive import App, ConfigError, Effects, Idempotency, Message, RetryPolicy
from redrive.monitoring.collector import collect
from redrive.monitoring.prometheus import ClusterCollector, registry_of
from redrive.runtime.stats import LIVE
from redrive.store.keys import idempotency_claims, idempotency_done
from tests.integration.helpers import dead_letters, held_claims, pending, running, until

DAY = 86_400.0
#: Keys kept a day, dead letters half a day: within the check of the TTL.
KEYED = Idempotency(key=lambda msg: msg.data["order_id"], ttl=DAY)


def stats_of(stream: str) -> dict[str, int]:
    """The counters of the live consumer(s) of ``stream``, summed."""
    total: Counter[str] = Counter()
    for stats in list(LIVE):
        if stats.stream == stream:
            total.update(stats.snapshot())
    return dict(total)


async def publish(r: redis.asyncio.Redis, stream: str, *order_ids: str) -> list[bytes]:
    return [await r.xadd(stream, {"data": json.dumps({"order_id": o})}) for o in order_ids]


async def test_a_duplicate_message_is_acked_without_running(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}payments"
    app = App()
    runs: Counter[str] = Counter()

    @app.handler(stream, group="pay", idempotency=KEYED, dlq_max_age=DAY / 2)
    async def charge(msg: Message) -> None:
        runs[msg.data["order_id"]] += 1

    await publish(aredis, stream, "o-1", "o-2", "o-1", "o-3", "o-2", "o-1")
    async with running(app, redis_url):
        await until(lambda: stats_of(stream).get("duplicates") == 3, what="3 duplicates")
        await until(_settled(aredis, stream, "pay"), what="nothing pending")

    assert runs == {"o-1": 1, "o-2": 1, "o-3": 1}
    counters = stats_of(stream)
    assert counters["succeeded"] == 3 and counters["committed"] == 3
    # Marked done for the TTL (on the server's clock), the claims gone with the ack.
    ends = await aredis.zscore(idempotency_done(stream, "pay"), "o-1")
    seconds, micros = await aredis.time()
    left = ends - (seconds * 1000 + micros // 1000)
    assert DAY * 1000 - 60_000 < left <= DAY * 1000
    assert await aredis.zcard(idempotency_done(stream, "pay")) == 3
    assert await held_claims(aredis, idempotency_claims(stream, "pay")) == []


async def test_the_keys_tracked_are_a_gauge_of_the_group(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, r: redis.Redis
) -> None:
    stream = f"{prefix}payments"
    app = App()

    @app.handler(stream, group="pay", idempotency=KEYED, dlq_max_age=DAY / 2)
    async def charge(msg: Message) -> None:
        pass

    await publish(aredis, stream, "o-1", "o-2", "o-1", "o-3")
    async with running(app, redis_url):
        await until(_settled(aredis, stream, "pay"), what="nothing pending")

    [group] = collect(r, [stream]).streams[0].groups
    assert group.idempotency_keys == 3
    text = generate_latest(registry_of(ClusterCollector(lambda: collect(r, [stream])))).decode()
    assert f'redrive_idempotency_keys_tracked{{group="pay",stream="{stream}"}} 3.0' in text


async def test_a_failed_first_attempt_is_retried_and_succeeds(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    # The claim of a failed run is released: its retry runs instead of being skipped.
    stream = f"{prefix}payments"
    app = App()
    attempts: list[int] = []

    @app.handler(stream, group="pay", idempotency=KEYED, dlq_max_age=DAY / 2,
                 retry=RetryPolicy(max_retries=3, base_delay=0.05))  # fmt: skip
    async def flaky(msg: Message) -> None:
        attempts.append(msg.attempt)
        if msg.attempt == 1:
            raise ConnectionError("gateway down")

    await publish(aredis, stream, "o-9")
    async with running(app, redis_url):
        await until(lambda: attempts == [1, 2], what="the retry ran")
        await until(_settled(aredis, stream, "pay"), what="nothing pending")

    assert await dead_letters(aredis, stream) == []
    assert await aredis.zscore(idempotency_done(stream, "pay"), "o-9") is not None
    assert stats_of(stream).get("duplicates", 0) == 0


async def test_a_new_entry_keyed_on_its_id_claims_nothing_in_redis_and_its_retry_does(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    # No other entry can hold a new entry's own id as its key, so its pending entry is
    # its claim; the retry (in the retry stream, same key) claims in the claims hash.
    stream = f"{prefix}payments"
    claims = idempotency_claims(stream, "pay")
    app = App()
    seen: list[tuple[int, str, bytes | None]] = []

    @app.handler(stream, group="pay", idempotency=Idempotency(ttl=DAY), dlq_max_age=DAY / 2,
                 retry=RetryPolicy(max_retries=3, base_delay=0.05))  # fmt: skip
    async def flaky(msg: Message) -> None:
        seen.append((msg.attempt, msg.entry_id, await aredis.hget(claims, msg.id)))
        if msg.attempt == 1:
            raise ConnectionError("gateway down")

    [entry] = await publish(aredis, stream, "o-1")
    async with running(app, redis_url):
        await until(lambda: len(seen) == 2, what="the retry ran")
        await until(_settled(aredis, stream, "pay"), what="nothing pending")

    (first, _, unclaimed), (second, retry_id, claim) = seen
    assert first == 1 and unclaimed is None
    assert second == 2 and claim is not None and claim.decode().endswith(f":{retry_id}")
    assert await aredis.zscore(idempotency_done(stream, "pay"), entry) is not None
    assert await held_claims(aredis, claims) == []  # the retry's claim went with its done mark
    assert stats_of(stream)["committed"] == 1


async def test_two_workers_racing_on_one_key_one_runs_the_other_waits(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}payments"
    started = asyncio.Event()
    release = asyncio.Event()
    runs: list[str] = []

    def app_for(name: str) -> App:
        app = App()

        @app.handler(stream, group="pay", idempotency=KEYED, dlq_max_age=DAY / 2)
        async def slow(msg: Message) -> None:
            runs.append(name)
            started.set()
            await release.wait()

        return app

    async with (
        running(app_for("a"), redis_url, consumer="a"),
        running(app_for("b"), redis_url, consumer="b"),
    ):
        await until(_blocked_reads(aredis, 2), what="both workers reading")
        await publish(aredis, stream, "o-7")
        await until(started.is_set, what="the first run")
        # Redis hands a new entry to the reader blocked longest: the other worker's.
        await until(_blocked_reads(aredis, 2), what="both workers reading again")
        await publish(aredis, stream, "o-7")
        await until(lambda: stats_of(stream).get("idempotency_busy", 0) >= 2,
                    what="the second run to wait for the claim, and ask again")  # fmt: skip
        assert len(runs) == 1 and await pending(aredis, stream, "pay") == 2
        release.set()
        await until(_settled(aredis, stream, "pay"), what="both settled")

    assert len(runs) == 1
    assert stats_of(stream).get("duplicates") == 1
    assert await dead_letters(aredis, stream) == []
    owners = {c["name"]: c["pending"] for c in await aredis.xinfo_consumers(stream, "pay")}
    assert set(owners) <= {"a", "b"}  # the entries never left the two workers


def _blocked_reads(r: redis.asyncio.Redis, n: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        clients = await r.client_list()
        return sum(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in clients) >= n

    return check


async def test_effects_are_applied_with_the_ack_and_once_per_key(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()
    # In the stream's slot (its hash tag), as effects must be on Redis Cluster.
    counter, events = f"{prefix}paid:{{{stream}}}", f"{prefix}events:{{{stream}}}"

    @app.handler(stream, group="shop", idempotency=KEYED, dlq_max_age=DAY / 2)
    async def pay(msg: Message) -> Effects:
        order = msg.data["order_id"]
        return Effects().hincr(counter, order).xadd(events, {"paid": order})

    await publish(aredis, stream, "o-1", "o-2", "o-1", "o-1")
    async with running(app, redis_url):
        await until(_settled(aredis, stream, "shop"), what="nothing pending")
        await until(lambda: stats_of(stream).get("duplicates") == 2, what="2 duplicates")

    assert await aredis.hgetall(counter) == {b"o-1": b"1", b"o-2": b"1"}
    assert await aredis.xlen(events) == 2


async def test_an_effect_on_a_key_of_the_wrong_type_dead_letters_with_nothing_applied(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    app = App()
    applied, not_a_hash = f"{prefix}applied:{{{stream}}}", f"{prefix}not-a-hash:{{{stream}}}"
    await aredis.set(not_a_hash, "x")

    @app.handler(stream, group="shop")
    async def pay(msg: Message) -> Effects:
        return Effects().incr(applied).hincr(not_a_hash, "n")

    await publish(aredis, stream, "o-1")
    async with running(app, redis_url):
        await until(_dlq_size(aredis, stream, 1), what="the dead letter")

    [dead] = await dead_letters(aredis, stream)
    assert dead["redrive-error-type"].endswith(b"EffectError")
    assert b"WRONGTYPE" in dead["redrive-error-message"]
    assert await aredis.get(applied) is None  # the first effect was not applied
    assert await pending(aredis, stream, "shop") == 0


def test_a_ttl_shorter_than_the_dlq_retention_is_refused_with_the_fix() -> None:
    app = App()

    with pytest.raises(ConfigError, match=r"unbounded \(dlq_max_age=None\).*Set dlq_max_age"):
        app.handler("s", group="g", idempotency=Idempotency(ttl=3600))(_noop)
    with pytest.raises(ConfigError, match=r"use ttl >= 7207"):
        app.handler("s", group="g", idempotency=Idempotency(ttl=3600), dlq_max_age=7200,
                    retry=RetryPolicy(max_retries=3, base_delay=1))(_noop)  # fmt: skip
    app.handler("s", group="g", idempotency=Idempotency(ttl=None))(_noop)  # kept for good


async def _noop(msg: Message) -> None:
    return None


def _settled(r: redis.asyncio.Redis, stream: str, group: str):  # type: ignore[no-untyped-def]
    """Every entry of ``stream`` delivered to ``group`` and none pending (retries too)."""

    async def check() -> bool:
        groups = {g["name"]: g for g in await r.xinfo_groups(stream)}
        if group.encode() not in groups:
            return False
        last = (await r.xinfo_stream(stream))["last-generated-id"]
        read_all = groups[group.encode()]["last-delivered-id"] == last
        return read_all and await pending(r, stream, group) == 0

    return check


def _dlq_size(r: redis.asyncio.Redis, stream: str, n: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return len(await dead_letters(r, stream)) == n

    return check


async def test_a_replay_of_a_message_whose_key_is_done_is_skipped_unless_told(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    from redrive import Reject
    from redrive.dlq.query import Filter
    from redrive.dlq.replay import ReplayOptions, replay

    stream = f"{prefix}payments"
    app = App()
    runs: list[str] = []
    broken = {"o-5"}

    @app.handler(stream, group="pay", idempotency=KEYED, dlq_max_age=DAY / 2)
    async def charge(msg: Message) -> None:
        runs.append(msg.data["order_id"])
        if msg.data["order_id"] in broken:
            raise Reject("card declined")

    await publish(aredis, stream, "o-5")
    async with running(app, redis_url):
        await until(_dlq_size(aredis, stream, 1), what="the dead letter")
        broken.clear()
        await publish(aredis, stream, "o-5")  # the customer paid again: this one succeeds
        await until(_settled(aredis, stream, "pay"), what="the duplicate settled")
        [dead] = await dead_letters(aredis, stream)
        assert dead["redrive-idempotency-key"] == b"o-5"
        assert dead["redrive-idempotency-done"] == idempotency_done(stream, "pay").encode()

        skipped = await replay(aredis, Filter(streams=(stream,)), ReplayOptions(everything=True))
        assert not skipped.moved and len(skipped.refused) == 1
        assert "already done" in skipped.refused[0][1]
        assert len(await dead_letters(aredis, stream)) == 1  # it stays in the DLQ

        forced = await replay(aredis, Filter(streams=(stream,)),
                              ReplayOptions(everything=True, ignore_idempotency=True))  # fmt: skip
        assert len(forced.moved) == 1
        await until(lambda: len(runs) == 3, what="the replay to run the handler again")
        await until(_settled(aredis, stream, "pay"), what="the replay settled")

    assert runs == ["o-5", "o-5", "o-5"]
    assert await dead_letters(aredis, stream) == []


async def test_publishing_again_with_the_same_dedupe_ids_adds_nothing(
    prefix: str, aredis: redis.asyncio.Redis
) -> None:
    from redrive import publish
    from redrive.runtime.dedupe import server_has_idmp
    from redrive.store.keys import publish_dedupe

    stream = f"{prefix}payments"
    bodies = [{"order_id": "o-1"}, {"order_id": "o-2"}]
    first = await publish(aredis, stream, bodies, dedupe_ids=["pay-o-1", "pay-o-2"])
    # A producer that lost the reply sends the batch again, plus one new message.
    again = await publish(aredis, stream, [*bodies, {"order_id": "o-3"}],
                          dedupe_ids=["pay-o-1", "pay-o-2", "pay-o-3"], dedupe_ttl=60)  # fmt: skip

    assert again[:2] == first and again[2] not in first
    assert await aredis.xlen(stream) == 3
    assert not await server_has_idmp(aredis)  # Redis 6.2 / 7.0 here: the Lua fallback
    key = publish_dedupe(stream, "pay-o-3")
    assert (await aredis.get(key)).decode() == again[2]
    assert 0 < await aredis.pttl(key) <= 60_000
    with pytest.raises(ConfigError, match="2 ids for 1 bodies"):
        await publish(aredis, stream, [bodies[0]], dedupe_ids=["a", "b"])
