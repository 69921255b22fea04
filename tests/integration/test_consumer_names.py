"""One live worker per consumer name: a second is refused, a dead one's name is taken over."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio

from redrive import App
from redrive.runtime.liveness import NameTaken
from redrive.store.keys import consumer_lease
from tests.integration.helpers import running, until


def app_for(stream: str, done: list[int]) -> App:
    app = App()

    @app.handler(stream, group="g")
    async def handle(msg):  # type: ignore[no-untyped-def]
        done.append(msg.data["n"])

    return app


async def test_a_second_worker_with_a_live_name_is_refused(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    name = f"{prefix}worker"
    done: list[int] = []
    async with running(app_for(stream, done), redis_url, consumer=name, block_ms=100):
        await until(lambda: aredis.exists(consumer_lease(name)), what="the first worker's lease")
        started = time.monotonic()
        with pytest.raises(NameTaken, match="is in use by a live worker"):
            async with running(app_for(stream, []), redis_url, consumer=name, block_ms=100):
                await asyncio.sleep(1)
        assert time.monotonic() - started < 2  # same host, live pid: refused at once
        await aredis.xadd(stream, {"data": json.dumps({"n": 1})})
        await until(lambda: done == [1], what="the first worker still serving")
    assert not await aredis.exists(consumer_lease(name))  # released on shutdown


async def test_the_worker_command_refuses_a_live_name_with_one_line_and_exit_2(
    redis_url: str, prefix: str, tmp_path: Path, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    name = f"{prefix}worker"
    module = tmp_path / "dupapp.py"
    module.write_text(
        "from redrive import App\napp = App()\n"
        f"@app.handler({stream!r}, group='g')\nasync def handle(msg):\n    pass\n"
    )
    path = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    async with running(app_for(stream, []), redis_url, consumer=name, block_ms=100):
        await until(lambda: aredis.exists(consumer_lease(name)), what="the first worker's lease")
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "redrive.cli", "--redis-url", redis_url, "worker",
             "dupapp:app", "--consumer", name],
            capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": path},
        )  # fmt: skip

    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "in use by a live worker" in line]
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr


async def test_the_name_of_a_killed_worker_on_this_host_is_taken_over_at_once(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    name = f"{prefix}worker"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is gone, as after kill -9
    token = f"{socket.gethostname()} {dead.pid} cafe0001"
    await aredis.set(consumer_lease(name), token, px=60_000)
    done: list[int] = []

    started = time.monotonic()
    async with running(app_for(stream, done), redis_url, consumer=name, block_ms=100):
        await aredis.xadd(stream, {"data": json.dumps({"n": 7})})
        await until(lambda: done == [7], what="the message")
    assert time.monotonic() - started < 3


async def test_a_name_held_on_another_host_is_ours_once_its_lease_lapses(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    name = f"{prefix}worker"
    await aredis.set(consumer_lease(name), "elsewhere 4242 0badf00d", px=1_500)  # not renewed
    done: list[int] = []

    async with running(app_for(stream, done), redis_url, consumer=name, block_ms=100):
        await aredis.xadd(stream, {"data": json.dumps({"n": 3})})
        await until(lambda: done == [3], 10, "the message")
    holder = await aredis.get(consumer_lease(name))
    assert holder is None  # released again on shutdown


async def test_a_name_renewed_on_another_host_is_refused(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    name = f"{prefix}worker"
    key = consumer_lease(name)
    await aredis.set(key, "elsewhere 4242 0badf00d", px=3_000)

    async def renew() -> None:  # the other host's worker is alive
        while True:
            await asyncio.sleep(0.5)
            await aredis.pexpire(key, 3_000)

    renewer = asyncio.create_task(renew())
    try:
        with pytest.raises(NameTaken, match="elsewhere 4242"):
            async with running(app_for(f"{prefix}orders", []), redis_url, consumer=name):
                await asyncio.sleep(1)
    finally:
        renewer.cancel()
