"""Worker options with a process-wide effect: the read-ahead byte budget and the event loop."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio
from prometheus_client import generate_latest

from redrive import App
from redrive.cli.worker import parse_size
from redrive.errors import ConfigError
from redrive.monitoring.prometheus import WorkerCollector, registry_of
from redrive.testing import running
from redrive.testing.running import options_for_tests

BODY_KB = 300


async def test_large_messages_are_read_ahead_within_the_byte_budget(
    aredis: redis.asyncio.Redis, redis_url: str, prefix: str
) -> None:
    stream = f"{prefix}big"
    app = App(redis_url)
    done: list[str] = []
    most_pending = 0

    @app.handler(stream, group="g", concurrency=16, prefetch=100)
    async def handle(msg):  # type: ignore[no-untyped-def]
        nonlocal most_pending
        info = await aredis.xpending(stream, "g")
        most_pending = max(most_pending, int(info["pending"]))
        await asyncio.sleep(0.02)
        done.append(msg.id)

    body = json.dumps({"pad": "x" * (BODY_KB * 1024)})
    for _ in range(30):
        await aredis.xadd(stream, {"data": body})
    options = options_for_tests(read_ahead_bytes=1024 * 1024)  # about 3 messages
    async with running(app, redis_url, options=options):
        deadline = time.monotonic() + 20
        while len(done) < 30:
            assert time.monotonic() < deadline, f"{len(done)} of 30 handled"
            await asyncio.sleep(0.02)
        text = generate_latest(registry_of(WorkerCollector())).decode()
    waits = re.search(r"^redrive_read_ahead_waits_total (\S+)$", text, re.M)
    assert waits is not None and float(waits.group(1)) >= 1, text  # the wait is visible
    # Without the byte bound the count alone (16 + 2 * 100) would have read all 30 at once.
    assert most_pending <= 5, most_pending


async def test_a_message_larger_than_the_budget_still_runs(
    aredis: redis.asyncio.Redis, redis_url: str, prefix: str
) -> None:
    stream = f"{prefix}huge"
    app = App(redis_url)
    done: list[int] = []

    @app.handler(stream, group="g")
    async def handle(msg):  # type: ignore[no-untyped-def]
        done.append(len(msg.data["pad"]))

    await aredis.xadd(stream, {"data": json.dumps({"pad": "y" * 50_000})})
    await aredis.xadd(stream, {"data": json.dumps({"pad": "z" * 10})})
    async with running(app, redis_url, options=options_for_tests(read_ahead_bytes=1000)):
        deadline = time.monotonic() + 10
        while len(done) < 2:
            assert time.monotonic() < deadline, done
            await asyncio.sleep(0.02)
    assert sorted(done) == [10, 50_000]


def test_sizes_are_read_as_people_write_them() -> None:
    assert parse_size("64MiB") == 64 * 1024**2
    assert parse_size("512k") == 512 * 1024
    assert parse_size("1GB") == 10**9
    assert parse_size("4096") == 4096
    assert parse_size("0") == 0
    with pytest.raises(ConfigError, match="64MiB"):
        parse_size("lots")


APP = """
import asyncio
from redrive import App

app = App()

@app.handler("{stream}", group="g")
async def handle(msg):
    loop = type(asyncio.get_running_loop()).__module__
    from redrive import context
    await context().redis.set("{stream}:loop", loop)
"""


def test_the_worker_runs_on_uvloop_when_asked(
    r: redis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    stream = f"{prefix}loop"
    (tmp_path / "loopapp.py").write_text(APP.format(stream=stream))
    r.xadd(stream, {"data": "{}"})
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "redrive.cli", "--redis-url", redis_url, "worker", "loopapp:app",
         "--consumer", f"{prefix}c", "--loop", "uvloop"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while r.get(f"{stream}:loop") is None:
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "the handler never ran"
            time.sleep(0.05)
        assert r.get(f"{stream}:loop") == b"uvloop"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=15)[0].decode()
    assert proc.returncode == 0, out
