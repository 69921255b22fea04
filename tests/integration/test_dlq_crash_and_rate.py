"""A replaying process killed with SIGKILL mid-way leaves every entry in exactly one place;
``--rate`` really limits the pace."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
import redis.asyncio

from redrive import dlq
from redrive.store import keys
from tests.conftest import _TARGETS
from tests.integration.dlq_support import origins, seed
from tests.integration.helpers import until


async def test_kill_9_mid_replay_leaves_each_entry_in_exactly_one_place(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 400)
    produced = {f"1-{i}" for i in range(400)}
    target = keys.retry_stream(stream, "orders")
    argv = [sys.executable, "-m", "redrive.cli", "--redis-url", redis_url,
            "dlq", "replay", stream, "--all", "--rate", "200"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await until(lambda: _moved_at_least(aredis, target, 60), timeout=15, what="60 moved")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err.decode()

    in_dlq = await origins(aredis, keys.dlq(stream))
    in_target = await origins(aredis, target)
    assert 60 <= len(in_target) < 400, "killed mid-way"
    assert len(in_dlq) == len(set(in_dlq)) and len(in_target) == len(set(in_target))
    assert not set(in_dlq) & set(in_target), "never in both"
    assert set(in_dlq) | set(in_target) == produced, "never in neither"
    trail = await aredis.xlen(keys.audit_trail(stream))
    assert trail == len(in_target), "one audit record per moved entry, no more, no less"


async def _moved_at_least(r: redis.asyncio.Redis, key: str, n: int) -> bool:
    return await r.exists(key) and await r.xlen(key) >= n


async def test_rate_100_on_500_entries_takes_at_least_4_5_seconds(
    request: pytest.FixtureRequest, redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    if request.node.callspec.params.get("_redis_target") != _TARGETS[0]:
        pytest.skip("timing test: runs against one Redis version only")
    stream = f"{prefix}orders"
    await seed(aredis, stream, 500)
    client = dlq.connect(redis_url)
    started = time.monotonic()
    report = await dlq.replay(
        client, dlq.Filter(streams=(stream,)), dlq.ReplayOptions(rate=100, everything=True)
    )
    elapsed = time.monotonic() - started
    await client.aclose()
    print(f"--rate 100 on 500 entries: {elapsed:.2f}s")
    assert len(report.moved) == 500
    assert elapsed >= 4.5
    assert elapsed < 8, "the limiter should not be much slower than asked"
    await asyncio.sleep(0)
