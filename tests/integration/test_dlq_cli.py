"""``redrive dlq`` from the command line: listing, paging, show, stats, bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import redis.asyncio

from redrive.store import keys
from tests.integration.dlq_support import run_cli, seed


async def cli(url: str, *argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """Run ``redrive --redis-url URL ARGV`` in a thread (the CLI runs its own loop)."""
    args: Sequence[str] = ["--redis-url", url, *argv]
    return await asyncio.to_thread(run_cli, args, stdin)


async def test_list_filters_pages_and_prints_json_lines(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 5)
    await seed(aredis, stream, 2, start=5, error_type="ValueError", message="bad amount 7",
               reason="permanent_error")  # fmt: skip

    code, out, _ = await cli(redis_url, "dlq", "list", stream, "--error-type", "TimeoutError",
                             "--limit", "3", "--json")  # fmt: skip
    page1 = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(page1) == 3
    code, out, _ = await cli(redis_url, "dlq", "list", stream, "--error-type", "TimeoutError",
                             "--cursor", page1[-1]["cursor"], "--json")  # fmt: skip
    page2 = [json.loads(line) for line in out.splitlines()]
    assert [r["origin_id"] for r in page1 + page2] == [f"1-{i}" for i in range(5)]
    code, out, _ = await cli(redis_url, "dlq", "list", stream, "--grep", "bad amount", "--json")
    assert [json.loads(line)["reason"] for line in out.splitlines()] == ["permanent_error"] * 2
    code, out, err = await cli(redis_url, "dlq", "list", stream, "--json", "--since", "2h")
    assert code == 1 and out == "", "the seeded letters died in 2023: nothing matched"
    assert "nothing matched" in err


async def test_show_prints_fields_history_traceback_and_redacts(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    body = {b"data": b'{"order_id": 9, "card": "4111111111111111"}', b"email": b"a@b.c"}
    [dead_id] = await seed(aredis, stream, 1, fields=body)

    code, out, _ = await cli(redis_url, "dlq", "show", dead_id, "--redact", "card,email", "--json")
    shown = json.loads(out)
    # The whole number: "4111" alone turns up in an entry id or a timestamp now and then.
    assert code == 0 and "4111111111111111" not in out and "a@b.c" not in out
    assert ["email", "***"] in shown["fields"]
    assert shown["history"][0]["e"] == "TimeoutError"
    assert 'File "/srv/app/gateway.py"' in shown["traceback"]
    code, out, _ = await cli(redis_url, "dlq", "show", dead_id, "--show-payload")
    assert code == 0 and "4111111111111111" in out and "traceback" in out


async def test_stats_group_by_fingerprint(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 2, message="timeout after 3012 ms")
    await seed(aredis, stream, 1, start=2, message="timeout after 2991 ms")
    await seed(aredis, stream, 1, start=3, error_type="ConnectionError",
               message="timeout after 2991 ms")  # fmt: skip

    code, out, _ = await cli(redis_url, "dlq", "stats", stream, "--json")
    stats = json.loads(out)
    assert code == 0 and stats["total"] == 4
    counts = sorted((f["error_type"], f["count"]) for f in stats["fingerprints"])
    assert counts == [("ConnectionError", 1), ("TimeoutError", 3)]
    [timeouts] = [f for f in stats["fingerprints"] if f["error_type"] == "TimeoutError"]
    assert timeouts["message"] == "timeout after <n> ms"
    code, out, _ = await cli(redis_url, "dlq", "replay", stream, "--fingerprint",
                             timeouts["fingerprint"], "--dry-run", "--json")  # fmt: skip
    assert json.loads(out.splitlines()[-1])["count"] == 3


async def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    ids = await seed(aredis, stream, 3)
    snapshot = await aredis.xrange(keys.dlq(stream))
    cases = [
        (["dlq", "replay", stream, "--id", ids[0], "--id", "1-999"], "unknown dead-letter id"),
        (["dlq", "replay", f"{prefix}nope", "--all"], "unknown stream"),
        (["dlq", "list", stream, "--since", "yesterday-ish"], "--since 'yesterday-ish'"),
        (["dlq", "purge", stream, "--all"], "pass --yes"),
        (["dlq", "replay", stream], "say what to replay"),
        (["dlq", "show", "1-999", "--stream", stream], "unknown dead-letter id"),
        (["dlq", "replay", stream, "--all", "--rate", "fast"], "--rate 'fast'"),
    ]
    for argv, message in cases:
        code, out, err = await cli(redis_url, *argv)
        assert code == 2, (argv, code, out, err)
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert await aredis.xrange(keys.dlq(stream)) == snapshot, "nothing half-done"
    assert not await aredis.exists(keys.retry_stream(stream, "orders"))

    code, _, err = await cli(redis_url, "dlq", "replay", stream, "--reason", "poison")
    assert code == 1 and "nothing matched" in err
