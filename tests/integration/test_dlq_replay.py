"""Replay: exactly the filtered entries go back, a running worker handles them, the
DLQ loses exactly them; canaries stop a replay that would fail again; the loop guard."""

from __future__ import annotations

import json

import redis.asyncio

from redrive import App, RetryPolicy, dlq
from redrive.store import keys
from tests.integration.dlq_support import origins, seed
from tests.integration.helpers import pending, running, until


def _app(stream: str, handled: list[tuple[str, int, str]], broken: dict[str, bool]) -> App:
    app = App()

    @app.handler(stream, group="orders", retry=RetryPolicy(max_retries=0), breaker=None)
    async def handle(msg):  # type: ignore[no-untyped-def]
        kind = msg.data["kind"]
        if kind == "timeout" and broken["gateway"]:
            raise TimeoutError(f"timeout after {3000 + msg.data['n']} ms")
        if kind == "bad":
            raise ValueError("amount must be positive")
        handled.append((msg.id, msg.attempt, msg.meta.get("replays", "0")))

    return app


async def _publish(r: redis.asyncio.Redis, stream: str) -> dict[str, str]:
    kinds = ["timeout"] * 6 + ["bad"] * 4
    ids = {}
    for n, kind in enumerate(kinds):
        entry_id = await r.xadd(stream, {"data": json.dumps({"kind": kind, "n": n})})
        ids[entry_id.decode()] = kind
    return ids


async def _dead(client: redis.asyncio.Redis, stream: str) -> list[dlq.DeadLetter]:
    return (await dlq.list_dead_letters(client, dlq.Filter(streams=(stream,)), limit=1000)).entries


async def test_filtered_replay_is_handled_by_the_running_worker(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    handled: list[tuple[str, int, str]] = []
    broken = {"gateway": True}
    client = dlq.connect(redis_url)
    async with running(_app(stream, handled, broken), redis_url):
        ids = await _publish(aredis, stream)
        await until(lambda: _count(client, stream, 10), what="ten dead letters")
        before = await _dead(client, stream)
        timeouts = {e.id for e in before if e.error_type == "TimeoutError"}
        broken["gateway"] = False  # the "fix"

        report = await dlq.replay(
            client,
            dlq.Filter(streams=(stream,), error_type="TimeoutError"),
            dlq.ReplayOptions(note="gateway fixed"),
        )
        await until(lambda: len(handled) == 6, what="the replayed six to be handled")
        await until(lambda: _no_pending(aredis, stream), what="acks")

    assert {m.dlq_id for m in report.moved} == timeouts and len(timeouts) == 6
    assert {m.target for m in report.moved} == {keys.retry_stream(stream, "orders")}
    expected = {i for i, kind in ids.items() if kind == "timeout"}
    assert {h[0] for h in handled} == expected, "handled under their original ids"
    assert {(h[1], h[2]) for h in handled} == {(1, "1")}, "fresh budget, one replay"
    after = await _dead(client, stream)
    assert {e.id for e in after} == {e.id for e in before} - timeouts
    assert all(e.error_type == "ValueError" for e in after)
    trail = await aredis.xrange(keys.audit_trail(stream))
    assert sorted(f[b"dlq-id"].decode() for _, f in trail) == sorted(timeouts)
    assert {f[b"note"] for _, f in trail} == {b"gateway fixed"}
    [summary] = [f for _, f in await aredis.xrange(keys.AUDIT) if f[b"op"].decode() == report.op]
    assert summary[b"action"] == b"replay" and summary[b"count"] == b"6"
    await client.aclose()


async def test_canary_that_dies_again_stops_the_replay(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    handled: list[tuple[str, int, str]] = []
    client = dlq.connect(redis_url)
    async with running(_app(stream, handled, {"gateway": True}), redis_url):
        await _publish(aredis, stream)
        await until(lambda: _count(client, stream, 10), what="ten dead letters")
        report = await dlq.replay(
            client,
            dlq.Filter(streams=(stream,), error_type="TimeoutError"),
            dlq.ReplayOptions(canary=2, canary_timeout=10),
        )

    assert report.canary is not None and len(report.canary.died) == 2
    assert len(report.moved) == 2 and "canary died again" in report.stopped
    after = await _dead(client, stream)
    assert len(after) == 10, "4 untouched timeouts + 4 bad + the 2 canaries, dead again"
    again = [e for e in after if e.replays == 1]
    assert len(again) == 2 and {e.meta["replayed-from"] for e in again} == set(report.canary.died)
    assert any("replay" in item for item in again[0].history), "the history marks the replay"
    await client.aclose()


async def test_loop_guard_refuses_until_forced_and_dry_run_changes_nothing(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    fresh = await seed(aredis, stream, 2)
    looping = await seed(aredis, stream, 1, start=2, replays=3)
    client = dlq.connect(redis_url)
    flt = dlq.Filter(streams=(stream,), reason="max_retries_exceeded")
    snapshot = await aredis.xrange(keys.dlq(stream))

    dry = await dlq.replay(client, flt, dlq.ReplayOptions(dry_run=True))
    assert [e.id for e, _ in dry.planned] == fresh
    assert [e.id for e, _ in dry.refused] == looping and "loop guard" in dry.refused[0][1]
    assert await aredis.xrange(keys.dlq(stream)) == snapshot, "dry run moved nothing"
    assert not await aredis.exists(keys.retry_stream(stream, "orders"), keys.AUDIT + "x")

    guarded = await dlq.replay(client, flt, dlq.ReplayOptions())
    assert [m.dlq_id for m in guarded.moved] == fresh
    forced = await dlq.replay(client, flt, dlq.ReplayOptions(force=True))
    assert [m.dlq_id for m in forced.moved] == looping
    target = keys.retry_stream(stream, "orders")
    assert await origins(aredis, target) == ["1-0", "1-1", "1-2"]
    [(_, last)] = await aredis.xrange(target, count=1, min=forced.moved[0].target_id)
    assert last[b"redrive-replays"] == b"4" and last[b"redrive-attempt"] == b"1"
    assert await aredis.xlen(keys.dlq(stream)) == 0
    await client.aclose()


async def _count(client: redis.asyncio.Redis, stream: str, n: int) -> bool:
    return await client.exists(keys.dlq(stream)) and await client.xlen(keys.dlq(stream)) == n


async def _no_pending(r: redis.asyncio.Redis, stream: str) -> bool:
    return await pending(r, stream, "orders") == 0
