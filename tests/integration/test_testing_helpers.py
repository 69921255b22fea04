"""The public testing helpers and the shared fixtures behave as the suite relies on."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import redis
import redis.asyncio

from redrive.errors import ConfigError, EmbeddedServerError
from redrive.store.process import pid_alive
from redrive.store.server import RedisServer, ServerConfig
from redrive.testing import RedisProcess, available_redis_binaries


async def test_fixtures_give_a_working_client_and_unique_prefix(
    aredis: redis.asyncio.Redis, prefix: str, redis_url: str
) -> None:
    assert prefix.startswith("t") and prefix.endswith(":") and len(prefix) == 10
    await aredis.set(f"{prefix}k", b"\x00\xff")
    assert await aredis.get(f"{prefix}k") == b"\x00\xff"  # bytes in, bytes out
    assert redis_url.startswith(("redis://", "rediss://", "unix://"))


def test_redis_proc_reports_its_version(redis_proc: RedisProcess) -> None:
    assert redis_proc.running and redis_proc.pid
    assert redis_proc.version[0] >= 6
    assert ":6379/" not in redis_proc.url


def test_binaries_are_distinct_versions() -> None:
    binaries = available_redis_binaries()
    assert len({b.resolve() for b in binaries}) == len(binaries)


def test_restart_replays_the_aof_on_the_same_port() -> None:
    with RedisProcess(appendonly=True, appendfsync="always", unix_socket=True) as proc:
        url, first_pid = proc.url, proc.pid
        client = redis.Redis.from_url(url)
        try:
            client.set("order:1", "paid")
            proc.kill()  # a crash: with appendfsync always the write is on disk
            assert not proc.running
            proc.restart()
            assert proc.url == url and proc.pid != first_pid
            assert client.get("order:1") == b"paid"
            assert proc.socket_path.exists()
        finally:
            client.close()
        directory = proc.directory
    assert directory is not None and not directory.exists()
    assert not proc.running


def test_stop_terminates_by_pid() -> None:
    proc = RedisProcess().start()
    pid = proc.pid
    assert pid is not None
    proc.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # signal 0: does the pid exist?


def test_never_on_the_shared_port() -> None:
    with pytest.raises(ConfigError, match="6379"):
        RedisProcess(port=6379)


def test_a_server_that_refuses_its_config_is_reported_and_not_left_running() -> None:
    proc = RedisProcess(extra_config=["no-such-directive yes"], start_timeout=5.0)
    try:
        with pytest.raises(EmbeddedServerError, match="redis-server did not start"):
            proc.start()
        assert not proc.running and proc.pid is None
    finally:
        proc.close()


def test_the_spawner_stops_a_daemonized_server_by_its_pid_file() -> None:
    directory = Path(tempfile.mkdtemp(prefix="rds"))  # short: a unix socket path
    try:
        config = ServerConfig(
            directory,
            unix_socket=directory / "s.sock",
            daemonize=True,
            pidfile=directory / "redis.pid",
        )
        server = RedisServer(config).start()
        pid = server.pid
        assert pid is not None and server.running and server.probe() == "ready"
        again = RedisServer(config)  # another handle, as a later command has
        assert again.pid == pid and again.info()["process_id"] == pid
        again.stop()
        assert not pid_alive(pid) and again.probe() == "down"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
