"""``redrive demo`` end to end: real worker processes, a reconciliation with lost == 0."""

from __future__ import annotations

import json
import os
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


def demo_argv(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "redrive.cli", "--redis-url", url, "demo", "--json", *args]


def run_demo(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        demo_argv(url, *args), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redrive.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_demo_loses_nothing_and_matches_its_plan(server: RedisProcess) -> None:
    bystander = redis.Redis.from_url(server.url)
    bystander.set("someone-elses-key", "kept")
    # The user's own app, on the names the README suggests: the demo must not touch it.
    app_id = bystander.xadd("ecommerce:orders", {"data": '{"order_id": 1}'})
    bystander.xgroup_create("ecommerce:orders", "orders-service", id="0")
    bystander.xadd("dlq:{ecommerce:orders}", {"data": "{}", "redrive-reason": "poison"})

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
    assert report["prefix"] == "demo:"
    assert [s["stream"] for s in report["streams"]] == [
        "demo:ecommerce:orders",
        "demo:ecommerce:payments",
    ]
    assert bystander.get("someone-elses-key") == b"kept"
    assert [e[0] for e in bystander.xrange("ecommerce:orders")] == [app_id]
    assert bystander.xlen("dlq:{ecommerce:orders}") == 1
    assert not bystander.exists("ecommerce:payments", "dlq:{ecommerce:payments}")
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


def test_two_demos_at_once_use_two_prefixes_and_both_lose_nothing(server: RedisProcess) -> None:
    args = ("--orders", "200", "--seed", "3", "--timeout", "40")
    first, second = (
        subprocess.Popen(demo_argv(server.url, *args), stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    )
    try:
        outputs = [proc.communicate(timeout=90)[0] for proc in (first, second)]
    finally:
        for proc in (first, second):
            if proc.poll() is None:  # a failed test must not leave a demo running
                proc.kill()
                proc.communicate()
    reports = [json.loads(out) for out in outputs]
    assert (first.returncode, second.returncode) == (0, 0)
    assert sorted(r["prefix"] for r in reports) == ["demo2:", "demo:"]
    for report in reports:
        assert (report["lost"], report["settled"], report["matches_plan"]) == (0, True, True)
    # Both leases were released: the next demo gets the first prefix again.
    client = redis.Redis.from_url(server.url)
    assert not client.exists("redrive:demo:lease:demo", "redrive:demo:lease:demo2")
    client.close()


def test_a_url_only_in_the_environment_needs_yes(server: RedisProcess) -> None:
    env = {**os.environ, "REDRIVE_REDIS_URL": server.url}
    client = redis.Redis.from_url(server.url)
    before = client.dbsize()

    refused = run_cli("demo", "--orders", "20", env=env)

    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "REDRIVE_REDIS_URL" in refused.stderr and "--yes" in refused.stderr
    assert client.dbsize() == before  # nothing written
    accepted = run_cli("demo", "--orders", "20", "--json", "--yes", env=env)
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["lost"] == 0
    client.close()


def test_keys_under_the_prefix_that_the_demo_did_not_create_are_refused() -> None:
    with RedisProcess() as fresh:
        client = redis.Redis.from_url(fresh.url)
        client.xadd("demo:ecommerce:orders", {"data": "mine"})

        done = run_cli("--redis-url", fresh.url, "demo", "--orders", "20", "--json")

        assert done.returncode == 2
        assert "demo:ecommerce:orders exists but was not created by redrive demo" in done.stderr
        assert "Traceback" not in done.stderr
        assert client.xlen("demo:ecommerce:orders") == 1
        assert not client.exists("redrive:demo:lease:demo")  # released on the way out
        client.close()


def test_the_dashboard_run_ends_its_last_frame_with_a_newline(server: RedisProcess) -> None:
    done = run_cli("--redis-url", server.url, "demo", "--orders", "40", "--seed", "2")
    assert done.returncode == 0, done.stderr
    assert done.stderr.endswith("\n")
    assert "demo: " in done.stderr  # the dashboard's frames went to stderr
    assert "lost: 0" in done.stdout
