"""Supervised jobs: bound to their snapshot, rate-limited, paused, resumed, cancelled,
resumed by another runner after a crash, paused by a canary or by relapses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from redrive import App, RetryPolicy, dlq
from redrive.dlq import jobs, snapshot
from redrive.dlq.jobs import Job, JobSpec
from redrive.dlq.jobs_runner import JobRunner
from redrive.errors import ConfigError
from redrive.store import job_calls, keys
from redrive.store.calls import Call
from tests.integration.dlq_support import origins, seed
from tests.integration.helpers import running, until


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A DLQ client; every job a test leaves unfinished is cancelled afterwards, so no
    later test's runner picks it up."""
    c = dlq.connect(redis_url)
    before = set(await c.smembers(keys.JOBS_ACTIVE))
    try:
        yield c
    finally:
        for raw in set(await c.smembers(keys.JOBS_ACTIVE)) - before:
            with contextlib.suppress(dlq.JobStateError):
                await jobs.cancel(c, raw.decode(), by="test-cleanup")
        await c.aclose()


@contextlib.asynccontextmanager
async def runner(
    client: redis.asyncio.Redis, name: str = "r1", lease_ms: int = 10_000
) -> AsyncIterator[tuple[JobRunner, asyncio.Task[None]]]:
    stop = asyncio.Event()
    job_runner = JobRunner(client, name=name, lease_ms=lease_ms)
    task = asyncio.create_task(job_runner.run(stop))
    try:
        yield job_runner, task
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 10)


async def status_is(client: redis.asyncio.Redis, job_id: str, *wanted: str) -> bool:
    return (await jobs.get(client, job_id)).status in wanted


async def summarized(client: redis.asyncio.Redis, job_id: str) -> bool:
    return bool(await client.hget(keys.job(job_id), "summarized"))


async def audit_of(client: redis.asyncio.Redis, op: str) -> list[dict[str, str]]:
    entries = await client.xrange(keys.AUDIT)
    rows = [{k.decode(): v.decode() for k, v in dict(f).items()} for _, f in entries]
    return [row for row in rows if row["op"] == op]


async def bound_job(
    client: redis.asyncio.Redis,
    aredis: redis.asyncio.Redis,
    stream: str,
    n: int,
    action: str = "replay",
    **spec: Any,
) -> Job:
    """``n`` dead letters of ``stream``, a preview of them all, and a job bound to it."""
    await seed(aredis, stream, n)
    preview = await snapshot.take(client, dlq.Filter(streams=(stream,)))
    return await jobs.submit(client, JobSpec(action, preview.id, **spec))


async def test_a_job_moves_exactly_the_previewed_refs(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    bound = await seed(aredis, stream, 5)
    preview = await snapshot.take(client, dlq.Filter(streams=(stream,)))
    late = await seed(aredis, stream, 2, start=5)  # died after the preview
    job = await jobs.submit(client, JobSpec("replay", preview.id, note="gateway fixed", by="ann"))
    assert job.status == "queued" and job.total == 5 and job.left == 5
    again = await jobs.submit(client, JobSpec("replay", preview.id, by="ann"))
    assert again.id == job.id, "a second click on confirm: the same job"
    with pytest.raises(ConfigError, match="bound to replay job"):
        await jobs.submit(client, JobSpec("delete", preview.id))

    async with runner(client):
        await until(lambda: status_is(client, job.id, "done"), what="the job to finish")
        await until(lambda: summarized(client, job.id), what="its audit summary")

    done = await jobs.get(client, job.id)
    assert (done.moved, done.gone, done.refused, done.left) == (5, 0, 0, 0)
    assert await origins(aredis, keys.retry_stream(stream, "orders")) == [
        f"1-{i}" for i in range(5)
    ]
    left = [text_id(i) for i, _ in await aredis.xrange(keys.dlq(stream))]
    assert left == late, "the entries that died after the preview stay"
    trail = await aredis.xrange(keys.audit_trail(stream))
    assert sorted(f[b"dlq-id"].decode() for _, f in trail) == sorted(bound)
    assert {f[b"op"].decode() for _, f in trail} == {job.op}
    rows = await audit_of(aredis, job.op)
    [summary] = [r for r in rows if r["action"] == "replay"]
    assert summary["count"] == "5" and summary["by"] == "ann" and summary["job"] == job.id
    assert [r["action"] for r in rows] == ["job-submitted", "replay"]
    assert job.id in [j.id for j in await jobs.list_jobs(client, limit=5)]


async def test_cancel_stops_a_rate_limited_job_midway_and_nothing_is_lost(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    ids = await seed(aredis, stream, 40)
    preview = await snapshot.take(client, dlq.Filter(streams=(stream,)))
    job = await jobs.submit(client, JobSpec("replay", preview.id, rate=20))

    async with runner(client):
        await until(lambda: _done_at_least(client, job.id, 5), what="five entries moved")
        cancelled = await jobs.cancel(client, job.id, by="bob")
        asked = time.monotonic()
        assert cancelled.status == "cancelled" and "cancelled by bob" in cancelled.reason
        await until(lambda: summarized(client, job.id), what="the runner to stop")
        stopped_in = time.monotonic() - asked

    final = await jobs.get(client, job.id)
    assert stopped_in < 1.5, "the runner saw the cancel within about a second"
    assert 5 <= final.moved < 40 and final.gone == 0
    assert final.moved + final.left == final.total == 40
    replayed = await origins(aredis, keys.retry_stream(stream, "orders"))
    still = [text_id(i) for i, _ in await aredis.xrange(keys.dlq(stream))]
    assert len(replayed) == final.moved and len(still) == final.left
    assert sorted(replayed + [f"1-{ids.index(i)}" for i in still]) == sorted(
        f"1-{n}" for n in range(40)
    ), "every entry in exactly one place"
    [summary] = [r for r in await audit_of(aredis, job.op) if r["action"] == "replay"]
    assert summary["count"] == str(final.moved) and summary["status"] == "cancelled"
    with pytest.raises(dlq.JobStateError, match="cancelled"):
        await jobs.resume(client, job.id)


async def test_pause_and_resume_are_audited_and_the_job_goes_on_from_its_cursor(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    job = await bound_job(client, aredis, stream, 20, rate=25)

    async with runner(client):
        await until(lambda: _done_at_least(client, job.id, 3), what="three entries moved")
        paused = await jobs.pause(client, job.id, by="carol", reason="gateway flaps")
        asked = time.monotonic()
        assert paused.status == "paused" and paused.reason == "paused by carol: gateway flaps"
        await until(lambda: _runner_gone(client, job.id), what="the runner to let go")
        assert time.monotonic() - asked < 1.5, "the runner saw the pause within about a second"
        at_pause = (await jobs.get(client, job.id)).done
        await asyncio.sleep(0.3)  # a paused job must not move: give it the chance to
        assert (await jobs.get(client, job.id)).done == at_pause < 20
        assert await client.xlen(keys.retry_stream(stream, "orders")) == at_pause
        resumed = await jobs.resume(client, job.id, by="carol")
        assert resumed.status == "queued"
        await until(lambda: status_is(client, job.id, "done"), what="the job to finish")

    assert sorted(await origins(aredis, keys.retry_stream(stream, "orders"))) == sorted(
        f"1-{n}" for n in range(20)
    )
    assert await client.xlen(keys.dlq(stream)) == 0
    rows = await audit_of(aredis, job.op)
    events = [(r["action"], r["by"]) for r in rows if r["action"].startswith("job-")]
    assert events == [("job-submitted", rows[0]["by"]), ("job-paused", "carol"),
                      ("job-resumed", "carol")]  # fmt: skip


async def test_a_killed_runner_is_taken_over_and_every_entry_moves_once(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    job = await bound_job(client, aredis, stream, 30, rate=60)

    first = JobRunner(client, name="first", lease_ms=600)
    task = asyncio.create_task(first.run(asyncio.Event()))
    await until(lambda: _done_at_least(client, job.id, 5), what="five entries moved")
    task.cancel()  # a crash: no release, the lease must run out
    with contextlib.suppress(asyncio.CancelledError):
        await task
    holder = (await client.hget(keys.job(job.id), "runner")).decode()
    assert holder == first.identity

    async with runner(client, name="second", lease_ms=600) as (second, _):
        await until(lambda: status_is(client, job.id, "done"), what="the takeover to finish")

    final = await jobs.get(client, job.id)
    replayed = await origins(aredis, keys.retry_stream(stream, "orders"))
    assert sorted(replayed) == sorted(f"1-{n}" for n in range(30)), "each moved exactly once"
    assert await client.xlen(keys.dlq(stream)) == 0
    assert final.moved + final.gone == 30 and final.gone <= 1, "a repeated move counts gone"
    trail = await aredis.xrange(keys.audit_trail(stream))
    assert len(trail) == 30 and second.identity != first.identity


async def test_two_runners_never_hold_one_job_at_once(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    job = await bound_job(client, aredis, stream, 250)
    a, b = JobRunner(client, name="a"), JobRunner(client, name="b")

    assert await a.run_once(), "a claims the job and moves a batch"
    assert not await b.run_once(), "b finds nothing it may run: a's lease is live"
    assert (await client.hget(keys.job(job.id), "runner")).decode() == a.identity
    holders: set[str] = set()
    while not await status_is(client, job.id, "done"):
        did = await asyncio.gather(a.run_once(), b.run_once())
        assert did.count(True) <= 1, "one job: never both runners at work on it"
        raw = await client.hget(keys.job(job.id), "runner")
        holders.add(raw.decode() if raw else "")
    assert holders <= {a.identity, ""}
    assert await client.xlen(keys.retry_stream(stream, "orders")) == 250


async def test_a_runner_whose_lease_was_taken_over_writes_nothing(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    job = await bound_job(client, aredis, stream, 3)
    key = keys.job(job.id)

    def lease(op: str, runner: str) -> Call[str]:
        return job_calls.job_lease(job=key, op=op, runner=runner, lease_ms=300)  # type: ignore[arg-type]

    assert await lease("claim", "stalled")(client) == "running"
    assert await lease("claim", "other")(client) == "held", "a live lease is not taken"
    await until(lambda: _claimed(client, lease("claim", "other")), what="the lease to run out")
    step = job_calls.job_step(job=key, runner="stalled", lease_ms=300, moved=1, gone=0, refused=0)
    assert await step(client) == "lost"
    assert await lease("renew", "stalled")(client) == "lost"
    taken = await jobs.get(client, job.id)
    assert (taken.done, taken.runner, taken.status) == (0, "other", "running")


async def _claimed(client: redis.asyncio.Redis, call: Call[str]) -> bool:
    return await call(client) == "running"


async def test_a_stopped_runner_gives_its_job_back_at_once(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    job = await bound_job(client, aredis, stream, 30, rate=40)
    async with runner(client, name="leaving"):
        await until(lambda: _done_at_least(client, job.id, 3), what="three entries moved")
    assert await status_is(client, job.id, "queued") and await _runner_gone(client, job.id)
    before = (await jobs.get(client, job.id)).done
    successor = JobRunner(client, name="next")  # the leaving one's 10 s lease was given back
    assert await successor.run_once()
    assert (await jobs.get(client, job.id)).done > before


async def test_a_replay_whose_group_is_missing_is_refused_at_submit(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 3, with_group=False)
    preview = await snapshot.take(client, dlq.Filter(streams=(stream,)))
    with pytest.raises(ConfigError, match=r"group 'orders' of stream .* does not exist"):
        await jobs.submit(client, JobSpec("replay", preview.id))
    assert await aredis.xlen(keys.dlq(stream)) == 3


async def test_a_target_that_turns_unusable_pauses_the_job_with_the_reason(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream, target = f"{prefix}orders", f"{prefix}elsewhere"
    job = await bound_job(client, aredis, stream, 4, to=target)
    await aredis.hset(target, "not", "a stream")  # after the submit's check
    async with runner(client):
        await until(lambda: status_is(client, job.id, "paused"), what="the job to pause")
    paused = await jobs.get(client, job.id)
    assert target in paused.reason and "hash" in paused.reason and paused.left == 4
    assert await aredis.xlen(keys.dlq(stream)) == 4


async def test_two_running_runners_share_out_jobs_but_never_one_job(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    job = await bound_job(client, aredis, stream, 30, rate=60)
    holders: set[str] = set()

    async def watch_holder() -> bool:
        raw = await client.hget(keys.job(job.id), "runner")
        holders.add(raw.decode() if raw else "")
        return await status_is(client, job.id, "done")

    async with runner(client, name="a") as (a, _), runner(client, name="b") as (b, _):
        await until(watch_holder, what="the job to finish")
    assert len(holders - {""}) == 1 and holders - {""} <= {a.identity, b.identity}
    assert sorted(await origins(aredis, keys.retry_stream(stream, "orders"))) == sorted(
        f"1-{n}" for n in range(30)
    )


async def test_cancel_stops_a_rate_limited_delete_between_batches(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    job = await bound_job(client, aredis, stream, 400, "delete", rate=100)  # 100 a second
    async with runner(client):
        await until(lambda: _done_at_least(client, job.id, 100), what="the first batch")
        await jobs.cancel(client, job.id, by="erin")
        await until(lambda: summarized(client, job.id), what="the runner to stop")
    final = await jobs.get(client, job.id)
    assert final.status == "cancelled" and 100 <= final.moved < 400
    assert await aredis.xlen(keys.dlq(stream)) == final.left == 400 - final.moved


def _failing_app(stream: str) -> App:
    app = App()

    @app.handler(stream, group="orders", retry=RetryPolicy(max_retries=0), breaker=None)
    async def handle(msg):  # type: ignore[no-untyped-def]
        raise TimeoutError(f"timeout after {3000 + msg.data['n']} ms")

    return app


async def _failed(r: redis.asyncio.Redis, stream: str, n: int) -> None:
    for i in range(n):
        await r.xadd(stream, {"data": json.dumps({"n": i})})
    await until(lambda: _dlq_len(r, stream, n), what=f"{n} dead letters")


async def test_a_canary_that_dies_again_pauses_the_job_with_the_reason(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, redis_url: str, prefix: str
) -> None:
    stream = f"{prefix}orders"
    async with running(_failing_app(stream), redis_url):
        await _failed(aredis, stream, 6)
        preview = await snapshot.take(client, dlq.Filter(streams=(stream,)))
        spec = JobSpec("replay", preview.id, canary=2, canary_timeout=10)
        job = await jobs.submit(client, spec)
        async with runner(client):
            await until(lambda: status_is(client, job.id, "paused"), 20, "the canary verdict")

    paused = await jobs.get(client, job.id)
    assert "canary died again" in paused.reason and "4 entries not replayed" in paused.reason
    assert (paused.moved, paused.left, paused.canary_state) == (2, 4, "died")
    assert await client.xlen(keys.dlq(stream)) == 6, "4 untouched + the 2 canaries, dead again"
    rows = await audit_of(aredis, job.op)
    assert [r["by"] for r in rows if r["action"] == "job-paused"] == ["runner:r1"]


async def test_a_canary_watch_cut_by_a_crash_is_taken_up_by_the_next_runner(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, redis_url: str, prefix: str
) -> None:
    stream = f"{prefix}orders"
    app = _failing_app(stream)
    async with running(app, redis_url):
        await _failed(aredis, stream, 6)
    preview = await snapshot.take(client, dlq.Filter(streams=(stream,)))
    job = await jobs.submit(client, JobSpec("replay", preview.id, canary=2, canary_timeout=20))
    first = JobRunner(client, name="first", lease_ms=600)
    task = asyncio.create_task(first.run(asyncio.Event()))
    # No worker runs: the two canaries wait in the retry stream, the watch cannot end.
    await until(lambda: _done_at_least(client, job.id, 2), what="the canaries moved")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    async with running(app, redis_url), runner(client, name="second", lease_ms=600):
        await until(lambda: status_is(client, job.id, "paused"), 20, "the canary verdict")

    paused = await jobs.get(client, job.id)
    assert "canary died again" in paused.reason and (paused.moved, paused.left) == (2, 4)
    assert await aredis.xlen(keys.dlq(stream)) == 6


async def test_replayed_messages_failing_again_pause_the_job(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, redis_url: str, prefix: str
) -> None:
    stream = f"{prefix}orders"
    async with running(_failing_app(stream), redis_url):
        await _failed(aredis, stream, 60)
        preview = await snapshot.take(client, dlq.Filter(streams=(stream,)))
        job = await jobs.submit(client, JobSpec("replay", preview.id, rate=15, relapse_min=3))
        async with runner(client):
            await until(lambda: status_is(client, job.id, "paused"), 20, "the relapse verdict")

    paused = await jobs.get(client, job.id)
    assert "failing again" in paused.reason and paused.left > 0
    assert await client.xlen(keys.dlq(stream)) == 60, "every one died again or was left"


async def test_a_delete_job_deletes_exactly_the_bound_entries_in_batches(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 1203)
    preview = await snapshot.take(client, dlq.Filter(streams=(stream,)))
    late = await seed(aredis, stream, 1, start=2000)
    await client.xdel(keys.dlq(stream), (await snapshot.refs(client, preview.id, 0, 0))[0]
                      .rpartition("@")[2])  # fmt: skip  # someone else purged one
    job = await jobs.submit(client, JobSpec("delete", preview.id, by="dave"))
    async with runner(client):
        await until(lambda: summarized(client, job.id), what="the delete job to finish")

    final = await jobs.get(client, job.id)
    assert (final.status, final.moved, final.gone) == ("done", 1202, 1)
    assert [text_id(i) for i, _ in await aredis.xrange(keys.dlq(stream))] == late
    [summary] = [r for r in await audit_of(aredis, job.op) if r["action"] == "purge"]
    assert summary["count"] == "1202" and summary["by"] == "dave"
    batches = await aredis.xrange(keys.audit_trail(stream))
    assert sum(int(f[b"deleted"]) for _, f in batches) == 1202 and len(batches) == 3


async def test_unknown_ids_and_forbidden_changes_say_so(
    client: redis.asyncio.Redis, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 1)
    with pytest.raises(dlq.UnknownJobError, match="does not exist"):
        await jobs.get(client, "nosuchjob")
    with pytest.raises(dlq.UnknownJobError):
        await jobs.pause(client, "nosuchjob")
    with pytest.raises(dlq.UnknownJobError, match="not a job id"):
        await jobs.cancel(client, "no such/job")
    with pytest.raises(dlq.UnknownSnapshotError, match="expired or never existed"):
        await jobs.submit(client, JobSpec("replay", "expired123"))
    with pytest.raises(ConfigError, match="job action 'archive'"):
        JobSpec("archive", "abc")
    with pytest.raises(ValueError, match="no target and no canary"):
        JobSpec("delete", "abc", canary=2)
    preview = await snapshot.take(client, dlq.Filter(streams=(stream,)))
    job = await jobs.submit(client, JobSpec("replay", preview.id))
    assert (await jobs.resume(client, job.id)).status == "queued", "queued already: a no-op"
    await jobs.cancel(client, job.id)
    assert await summarized(client, job.id), "no runner held it: cancel summarised it"
    with pytest.raises(dlq.JobStateError, match="is cancelled"):
        await jobs.pause(client, job.id)
    with pytest.raises(dlq.JobStateError, match="only a paused job can be resumed"):
        await jobs.resume(client, job.id)


def text_id(raw: bytes) -> str:
    return raw.decode()


async def _done_at_least(client: redis.asyncio.Redis, job_id: str, n: int) -> bool:
    return (await jobs.get(client, job_id)).done >= n


async def _runner_gone(client: redis.asyncio.Redis, job_id: str) -> bool:
    return not await client.hget(keys.job(job_id), "runner")


async def _dlq_len(r: redis.asyncio.Redis, stream: str, n: int) -> bool:
    return bool(await r.exists(keys.dlq(stream))) and await r.xlen(keys.dlq(stream)) == n
