"""The embedded server: one real redis-server per data dir, shared, stoppable, durable."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redrive.errors import EmbeddedServerError
from redrive.store.embedded import EmbeddedServer, ensure_url
from redrive.testing import available_redis_binaries, redis_server_version

BINARIES = available_redis_binaries()
IDS = ["redis{}.{}".format(*redis_server_version(b)[:2]) for b in BINARIES]
pytestmark = pytest.mark.skipif(not BINARIES, reason="no redis-server available")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp with a short name: the socket path must stay below ~107 bytes.
    path = Path(tempfile.mkdtemp(prefix="rd"))
    yield path
    EmbeddedServer(path).stop()  # by pid, even if the test failed half way
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=BINARIES, ids=IDS)
def server(request: pytest.FixtureRequest, data_dir: Path) -> EmbeddedServer:
    return EmbeddedServer(data_dir, binary=request.param)


def _roundtrip(url: str, key: str, value: bytes | None = None) -> bytes | None:
    client = redis.Redis.from_url(url)
    try:
        if value is not None:
            client.set(key, value)
        got = client.get(key)
        return got if isinstance(got, bytes) else None
    finally:
        client.close()


def test_start_reuse_status_stop(server: EmbeddedServer) -> None:
    url = server.start()
    assert url == f"unix://{server.data_dir}/redis.sock"
    first = server.status()
    assert first.running and first.pid and first.version

    # A second command (another object, same dir) shares the running server.
    assert EmbeddedServer(server.data_dir).start() == url
    assert EmbeddedServer(server.data_dir).status().pid == first.pid
    assert _roundtrip(url, "k", b"v") == b"v"

    assert server.stop() is True
    after = server.status()
    assert not after.running and after.pid is None
    assert not server.pid_path.exists() and not server.socket_path.exists()
    assert server.stop() is False  # idempotent


def test_listens_only_on_the_socket(server: EmbeddedServer) -> None:
    url = server.start()
    client = redis.Redis.from_url(url)
    try:
        config = client.config_get("port")
        assert config["port"] == "0"
        assert server.socket_path.stat().st_mode & 0o777 == 0o700
    finally:
        client.close()


def test_dead_pid_in_pid_file_is_replaced(server: EmbeddedServer) -> None:
    server.data_dir.mkdir(exist_ok=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    server.pid_path.write_text(f"{gone.pid}\n")
    server.socket_path.touch()  # a leftover socket file nobody listens on

    server.start()

    status = server.status()
    assert status.running and status.pid != gone.pid
    assert int(server.pid_path.read_text()) == status.pid


def test_pid_reused_by_another_program_is_left_alone(server: EmbeddedServer) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        server.data_dir.mkdir(exist_ok=True)
        server.pid_path.write_text(f"{bystander.pid}\n")

        server.start()

        assert server.status().pid != bystander.pid
        assert server.stop() is True
        assert bystander.poll() is None, "stop() must never signal a process it does not own"
    finally:
        bystander.kill()
        bystander.wait()


def test_aof_keeps_data_across_stop_and_start(server: EmbeddedServer) -> None:
    url = server.start()
    _roundtrip(url, "order:1", b"paid")
    server.stop()

    assert server.start() == url
    assert _roundtrip(url, "order:1") == b"paid"


def test_appendfsync_always_is_applied(data_dir: Path) -> None:
    url = EmbeddedServer(data_dir, appendfsync="always").start()
    client = redis.Redis.from_url(url)
    try:
        assert client.config_get("appendfsync")["appendfsync"] == "always"
        assert client.config_get("appendonly")["appendonly"] == "yes"
    finally:
        client.close()


def test_too_long_socket_path_says_what_to_do(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    with pytest.raises(EmbeddedServerError, match="shorter --data-dir"):
        EmbeddedServer(deep).start()
    assert not deep.exists(), "nothing is created before the check"


def test_ensure_url_prefers_explicit_then_env(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDRIVE_REDIS_URL", "redis://env-host:6380/0")
    assert ensure_url("redis://cli-host:6381/1", data_dir) == "redis://cli-host:6381/1"
    assert ensure_url(None, data_dir) == "redis://env-host:6380/0"
    monkeypatch.delenv("REDRIVE_REDIS_URL")
    assert ensure_url(None, data_dir) == f"unix://{data_dir}/redis.sock"


def test_kill_9_with_appendfsync_always_loses_nothing(data_dir: Path) -> None:
    server = EmbeddedServer(data_dir, appendfsync="always")
    url = server.start()
    _roundtrip(url, "payment:7", b"captured")
    pid = server.status().pid
    assert pid is not None

    os.kill(pid, signal.SIGKILL)  # pid file and socket file stay behind, as in a crash
    assert server.pid_path.exists()

    assert server.start() == url
    assert server.status().pid != pid
    assert _roundtrip(url, "payment:7") == b"captured"


def test_concurrent_starts_share_one_server(data_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from redrive.store.embedded import EmbeddedServer;"
        "s = EmbeddedServer(Path(sys.argv[1])); s.start(); print(s.status().pid)"
    )
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(data_dir)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    pids = {proc.communicate(timeout=30)[0].strip() for proc in starters}
    assert all(proc.returncode == 0 for proc in starters)
    assert len(pids) == 1 and pids != {"None"}
