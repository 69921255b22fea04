"""`redrive server start|stop|status` end to end, through the real entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from redrive.store.embedded import EmbeddedServer
from redrive.testing import available_redis_binaries

pytestmark = pytest.mark.skipif(not available_redis_binaries(), reason="no redis-server")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rd"))
    yield path
    EmbeddedServer(path).stop()
    shutil.rmtree(path, ignore_errors=True)


def redrive(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDRIVE_REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "redrive.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_start_status_stop_story(data_dir: Path) -> None:
    dd = ["--data-dir", str(data_dir)]

    down = redrive(*dd, "server", "status")
    assert down.returncode == 1
    assert "not running" in down.stdout

    started = redrive(*dd, "server", "start")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("redis-server ")
    assert f"at unix://{data_dir}/redis.sock" in started.stdout

    again = redrive(*dd, "server", "start")
    assert again.returncode == 0 and "already running" in again.stdout

    status = redrive(*dd, "server", "status", "--json")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert report["running"] is True and report["pid"] > 0
    assert report["url"] == f"unix://{data_dir}/redis.sock"
    assert report["data_dir"] == str(data_dir)

    stopped = redrive(*dd, "server", "stop")
    assert stopped.returncode == 0 and f"pid {report['pid']}" in stopped.stdout
    assert redrive(*dd, "server", "status").returncode == 1
    assert "not running" in redrive(*dd, "server", "stop").stdout


def test_status_json_when_down_exits_1(data_dir: Path) -> None:
    down = redrive("--data-dir", str(data_dir), "server", "status", "--json")
    assert down.returncode == 1
    assert json.loads(down.stdout)["running"] is False


def test_too_long_data_dir_is_one_line_and_exit_2() -> None:
    long_dir = "/tmp/" + "x" * 120
    failed = redrive("--data-dir", long_dir, "server", "start")
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    assert failed.stderr.count("\n") == 1 and "shorter --data-dir" in failed.stderr
    assert not Path(long_dir).exists()
