"""``redrive demo`` end to end: real worker processes, a reconciliation with lost == 0."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redrive.testing import RedisProcess, available_redis_binaries

pytestmark = pytest.mark.skipif(not available_redis_binaries(), reason="no redis-server")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisProcess]:
    # Its own server: the demo uses fixed stream names and deletes its own keys.
    with RedisProcess() as proc:
        yield proc


def run_demo(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "redrive.cli", "--redis-url", url, "demo", "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_demo_loses_nothing_and_matches_its_plan(server: RedisProcess) -> None:
    bystander = redis.Redis.from_url(server.url)
    bystander.set("someone-elses-key", "kept")

    code, report = run_demo(server.url, "--orders", "300", "--seed", "5", "--timeout", "30")

    assert code == 0
    assert (report["lost"], report["settled"], report["matches_plan"]) == (0, True, True)
    assert report["worker_exit_codes"] == [0, 0]
    # The outage's timeouts died, were replayed once the gateway was back, and succeeded:
    # "matches_plan" above counts them as succeeded, so the replay moved every one.
    assert report["replayed"] > 0
    orders, payments = report["streams"]
    assert orders["produced"] + payments["produced"] == 300
    for stream in (orders, payments):
        assert stream["pending"] == 0 and stream["duplicates"] == 0
        assert stream["succeeded"] + stream["dead_total"] == stream["produced"]
        assert set(stream["dead"]) <= {"poison", "permanent_error", "max_retries_exceeded"}
        assert stream["retried"] > 0
    assert bystander.get("someone-elses-key") == b"kept"
    bystander.close()


def test_a_second_run_starts_from_a_clean_slate(server: RedisProcess) -> None:
    first_code, first = run_demo(server.url, "--orders", "100", "--seed", "9")
    code, again = run_demo(server.url, "--orders", "100", "--seed", "9")
    assert (first_code, code) == (0, 0)
    # Same seed, same outcomes: nothing of the first run is counted twice.
    assert first["expected"] == again["expected"]
    assert [s["dead"] for s in first["streams"]] == [s["dead"] for s in again["streams"]]
    assert [s["produced"] for s in again["streams"]] == [60, 40]
    assert again["lost"] == 0


def test_bad_options_are_one_line_errors(server: RedisProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "redrive.cli", "--redis-url", server.url, "demo", "--orders", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
