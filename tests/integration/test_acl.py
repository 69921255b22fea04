"""Least-privilege ACL users: each role does its job and is refused beyond it.

A private ``redis-server`` gets three users built from ``redrive.store.acl.acl_rules``
(the rules docs/security.md documents) for the streams ``shop:*``. After every story the
server's ``ACL LOG`` must hold no refusal the role should not have met.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

from redrive import App, Reject, RetryPolicy
from redrive.errors import StoreError
from redrive.store import keys
from redrive.store.acl import acl_rules
from redrive.store.connection import async_client, describe_error
from redrive.testing import RedisProcess, available_redis_binaries
from tests.integration.dlq_support import run_cli, seed
from tests.integration.helpers import dead_letters, running, until

PASSWORD = "s3cret-for-tests"
ROLES = ("worker", "operator", "monitor")


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisProcess]:
    binaries = available_redis_binaries()
    if not binaries:
        pytest.skip("no redis-server")
    with RedisProcess(binaries[0]) as server:
        yield server


@pytest.fixture
async def admin(acl_server: RedisProcess) -> AsyncIterator[redis.asyncio.Redis]:
    client = async_client(acl_server.url)
    for role in ROLES:
        rules = acl_rules(role, streams=["shop:*"], redis_version=acl_server.version)
        await client.execute_command("ACL", "SETUSER", role, "reset", "on", f">{PASSWORD}", *rules)
    await client.execute_command("ACL", "LOG", "RESET")
    try:
        yield client
    finally:
        await client.aclose()


def url_of(server: RedisProcess, role: str) -> str:
    return f"redis://{role}:{PASSWORD}@127.0.0.1:{server.port}/0"


async def refusals(admin: redis.asyncio.Redis, user: str) -> list[str]:
    """What the server refused ``user`` (ACL LOG), but redis-py's own CLIENT SETINFO:
    Redis < 7.2 has no such subcommand, 6.2 logs the refusal before noticing, and
    redis-py ignores the answer (see store/acl.py and docs/security.md)."""
    log = await admin.acl_log()
    return [f"{_text(e['object'])} ({_text(e['reason'])})" for e in log
            if _text(e["username"]) == user and _text(e["object"]) != "client"]  # fmt: skip


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def cli(url: str, *argv: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(run_cli, ["--redis-url", url, *argv])


async def test_the_worker_consumes_retries_and_dead_letters(
    acl_server: RedisProcess, admin: redis.asyncio.Redis
) -> None:
    stream = "shop:orders"
    done: list[int] = []
    app = App()

    @app.handler(stream, group="orders", retry=RetryPolicy(max_retries=2, base_delay=0.05))
    async def handle(msg):  # type: ignore[no-untyped-def]
        n = msg.data["n"]
        if n == 0:
            raise Reject("closed shop")  # dead-lettered at once
        if msg.attempt == 1:
            raise TimeoutError("gateway slow")  # retried once, then succeeds
        done.append(n)

    for n in range(5):
        await admin.xadd(stream, {"data": json.dumps({"n": n})})
    async with running(app, url_of(acl_server, "worker"), block_ms=100):
        await until(lambda: sorted(done) == [1, 2, 3, 4], what="four successes")
        await until(lambda: _dlq_len(admin, stream, 1), what="the dead letter")
    assert (await dead_letters(admin, stream))[0]["redrive-reason"] == b"permanent_error"
    assert await refusals(admin, "worker") == []


async def test_the_operator_replays_and_purges(
    acl_server: RedisProcess, admin: redis.asyncio.Redis
) -> None:
    stream = "shop:payments"
    await seed(admin, stream, 4)
    url = url_of(acl_server, "operator")

    first = _first(await admin.xrange(keys.dlq(stream)))
    code, _, err = await cli(url, "dlq", "replay", stream, "--id", first)
    assert code == 0, err
    assert await admin.xlen(keys.retry_stream(stream, "orders")) == 1, "replayed to the group"
    assert await admin.xlen(keys.dlq(stream)) == 3
    code, _, err = await cli(url, "dlq", "purge", stream, "--all", "--yes")
    assert code == 0, err
    assert await admin.xlen(keys.dlq(stream)) == 0
    assert await refusals(admin, "operator") == []


async def test_the_monitor_reads_but_cannot_purge_or_write(
    acl_server: RedisProcess, admin: redis.asyncio.Redis
) -> None:
    stream = "shop:refunds"
    await seed(admin, stream, 3)
    url = url_of(acl_server, "monitor")

    code, out, err = await cli(url, "dlq", "list", stream, "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 3
    code, out, err = await cli(url, "dlq", "purge", stream, "--all", "--yes")
    assert code != 0
    assert await admin.xlen(keys.dlq(stream)) == 3, "nothing was purged"
    line = err.strip().splitlines()[-1]
    assert "ACL SETUSER <user> +" in line, line
    assert await refusals(admin, "monitor"), "the refusal is in the server's ACL LOG"

    monitor = async_client(url)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError) as refused:
            await monitor.xadd(stream, {"data": "{}"})
    finally:
        await monitor.aclose()
    message = describe_error(refused.value, url)
    assert "may not run XADD: grant it with ACL SETUSER <user> +xadd" in message
    assert PASSWORD not in message


async def test_the_monitor_records_health_alerts_and_reads_past_foreign_index_entries(
    acl_server: RedisProcess, admin: redis.asyncio.Redis
) -> None:
    stream = "shop:alerts"
    await seed(admin, stream, 3)  # and the group "orders", as a worker would have
    await admin.sadd(keys.STREAMS_INDEX, stream, "billing:invoices")  # outside ~shop:*
    await admin.execute_command("ACL", "LOG", "RESET")
    url = url_of(acl_server, "monitor")
    try:
        code, out, err = await cli(url, "health", "--json", "--config", "/dev/null")
        report = json.loads(out)
        # The foreign entry is one WARN check and one stderr line; shop:alerts is judged.
        assert code == 1, err
        assert [c["check"] for c in report["checks"] if c["stream"] == "billing:invoices"] == [
            "stream_index"
        ]
        assert any(c["stream"] == stream and c["check"] == "dlq_size" for c in report["checks"])
        # stderr: the warning, and the logged state change of that check (first run only).
        lines = err.strip().splitlines()
        assert len(lines) == 2 and all("billing:invoices" in line for line in lines), err
        # The alert states were recorded (WATCH/MULTI/HSET/EXEC): the only refusal is the
        # read of the foreign key.
        assert await admin.hget(keys.HEALTH_STATE, f"dlq_size|{stream}|") == b"OK"
        assert set(await refusals(admin, "monitor")) == {"billing:invoices (key)"}
        for argv in (["monitor", "--once"], ["metrics", "--once"]):
            code, out, err = await cli(url, *argv)
            assert code == 0 and stream in out, err
            assert err.count("\n") == 1 and "billing:invoices" in err
        if acl_server.version >= (7, 0):
            monitor = async_client(url)
            try:  # the selector grants HSET on the health-state key only
                with pytest.raises(redis.exceptions.NoPermissionError):
                    await monitor.hset(keys.stats(stream, "orders"), "succeeded", 1)
            finally:
                await monitor.aclose()
    finally:
        await admin.srem(keys.STREAMS_INDEX, stream, "billing:invoices")
        await admin.delete(keys.HEALTH_STATE)


async def test_a_worker_without_its_streams_fails_with_one_line(
    acl_server: RedisProcess, admin: redis.asyncio.Redis
) -> None:
    app = App()

    @app.handler("billing:invoices", group="billing")  # not in the worker's ~shop:*
    async def handle(msg):  # type: ignore[no-untyped-def]
        pass

    with pytest.raises(StoreError, match="may not access one of the keys"):
        async with running(app, url_of(acl_server, "worker"), block_ms=100) as worker:
            await asyncio.wait([worker], timeout=5)  # it stops at once, with the error


async def _dlq_len(r: redis.asyncio.Redis, stream: str, n: int) -> bool:
    return int(await r.xlen(keys.dlq(stream))) == n


def _first(entries: list[tuple[bytes, object]]) -> str:
    return entries[0][0].decode()


async def test_the_operator_runs_a_snapshot_bound_job_and_the_monitor_lists_it(
    acl_server: RedisProcess, admin: redis.asyncio.Redis
) -> None:
    # What the dashboard does for an operator (preview, job, runner) and for a monitor.
    from redrive.dlq import JobRunner, JobSpec, jobs, snapshot
    from redrive.dlq.query import Filter

    stream = "shop:returns"
    await seed(admin, stream, 3)
    operator = async_client(url_of(acl_server, "operator"))
    monitor = async_client(url_of(acl_server, "monitor"))
    try:
        preview = await snapshot.take(operator, Filter(streams=(stream,)))
        job = await jobs.submit(operator, JobSpec(action="replay", snapshot=preview.id, by="t"))
        runner = JobRunner(operator, name="acl-test")
        while (await jobs.get(operator, job.id)).status != "done":
            await runner.run_once()
        assert await admin.xlen(keys.dlq(stream)) == 0
        assert [j.id for j in await jobs.list_jobs(monitor)][:1] == [job.id]
    finally:
        await operator.aclose()
        await monitor.aclose()
    assert await refusals(admin, "operator") == []
    assert await refusals(admin, "monitor") == []


async def test_an_idempotent_worker_claims_commits_and_releases(
    acl_server: RedisProcess, admin: redis.asyncio.Redis
) -> None:
    from redrive import Idempotency

    stream = "shop:invoices"
    runs: list[int] = []
    app = App()

    @app.handler(stream, group="billing", idempotency=Idempotency(ttl=None),
                 retry=RetryPolicy(max_retries=1, base_delay=0.05))  # fmt: skip
    async def bill(msg):  # type: ignore[no-untyped-def]
        runs.append(msg.attempt)
        if msg.attempt == 1:
            raise TimeoutError("ledger slow")  # the claim is released, the retry runs

    await admin.xadd(stream, {"data": json.dumps({"n": 1})})
    async with running(app, url_of(acl_server, "worker"), block_ms=100):
        await until(lambda: runs == [1, 2], what="the retry to run")
        await until(lambda: _pending_is_zero(admin, stream, "billing"), what="the commit")
    assert await refusals(admin, "worker") == []


async def _pending_is_zero(r: redis.asyncio.Redis, stream: str, group: str) -> bool:
    retry = await r.xpending(keys.retry_stream(stream, group), group)
    return (await r.xpending(stream, group))["pending"] == 0 and retry["pending"] == 0
