"""``redrive health`` against real Redis: thresholds, alerts once per change, dead consumers."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from redrive.cli.main import _register, cli
from redrive.monitoring.collector import collect
from redrive.store import keys
from tests.chaos.harness import Scenario, Workers, wait_until


class Hook:
    """A local webhook receiver: every POSTed JSON body, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """URL with a token in path and query, as real webhooks have."""
        return f"http://127.0.0.1:{self.server.server_port}/hooks/T0/SECRET123?token=SECRET456"

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A webhook receiver on 127.0.0.1, closed after the test."""
    receiver = Hook()
    try:
        yield receiver
    finally:
        receiver.close()


def health(url: str, *args: str) -> Result:
    """Run ``redrive health`` in-process."""
    _register()
    return CliRunner().invoke(cli, ["--redis-url", url, "health", *args])


def test_dlq_growth_turns_warn_then_crit_and_ok_after_purge_alerting_once(
    redis_url: str, r: redis.Redis, prefix: str, tmp_path: Path, hook: Hook
) -> None:
    stream = f"{prefix}orders"
    dlq = keys.dlq(stream)
    r.xgroup_create(stream, "g", id="0", mkstream=True)
    config = tmp_path / "health.toml"
    config.write_text(
        '[thresholds]\ndlq_size = { warn = 3, crit = 6 }\n'
        f'[webhook]\nurl = "{hook.url}"\ntimeout_seconds = 2\nretries = 1\n'
    )  # fmt: skip
    args = ("--config", str(config), "--stream", stream, "--json")
    r.hdel(keys.HEALTH_STATE, f"dlq_size|{stream}|")
    try:
        states, logs = [], []
        for size in (0, 3, 3, 6, 7, 0, 0):
            while r.xlen(dlq) < size:
                r.xadd(dlq, {"redrive-reason": "poison"})
            if size == 0:
                r.xtrim(dlq, maxlen=0)  # the purge
            result = health(redis_url, *args)
            report = json.loads(result.stdout)
            check = next(c for c in report["checks"] if c["check"] == "dlq_size")
            states.append((check["state"], result.exit_code))
            logs.append(result.output)  # stdout and stderr: the alert log lines
    finally:
        r.hdel(keys.HEALTH_STATE, *(f"{c}|{stream}|" for c in ("dlq_size", "dlq_growth")))
        r.hdel(
            keys.HEALTH_STATE,
            *(
                f"{c}|{stream}|g"
                for c in (
                    "error_rate",
                    "lag",
                    "oldest_pending_age",
                    "dead_consumers",
                    "open_breakers",
                )
            ),
        )
    assert states == [
        ("OK", 0), ("WARN", 1), ("WARN", 1), ("CRIT", 2), ("CRIT", 2), ("OK", 0), ("OK", 0)
    ]  # fmt: skip
    # Each change POSTed exactly once, repeated runs in the same state POST nothing.
    changes = [(b["previous"], b["state"]) for b in hook.bodies if b["check"] == "dlq_size"]
    assert changes == [("OK", "WARN"), ("WARN", "CRIT"), ("CRIT", "OK")]
    assert all(b["stream"] == stream for b in hook.bodies)
    # Each change is logged once too, and the webhook's token never reaches a log line.
    assert sum("health dlq_size" in out for out in logs) == 3
    assert not any("SECRET" in out for out in logs)


def test_a_killed_worker_with_pending_entries_is_a_dead_consumer(
    redis_url: str, r: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    scenario = Scenario(prefix=prefix, url=redis_url)
    stream = scenario.keys.stream
    for i in range(4):
        r.xadd(stream, {"data": json.dumps({"n": i})})
    workers = Workers(scenario, tmp_path)
    try:
        # Each message sleeps for a minute: the worker holds all four when it is killed.
        worker = workers.spawn("doomed-1", sleep=60, concurrency=4, prefetch=4)
        wait_until(lambda: _pending(r, stream) == 4, "4 entries pending", alive=[worker])
        worker.signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        workers.close()
    wait_until(
        lambda: _dead(r, stream), "a dead consumer", timeout=5
    )  # idle > 0.3 s with entries pending
    group = collect(r, [stream], dead_after=0.3).streams[0].groups[0]
    (dead,) = group.dead_consumers
    assert dead.name == "doomed-1" and dead.pending == 4
    result = CliRunner().invoke(
        cli, ["--redis-url", redis_url, "health", "--stream", stream, "--no-alerts", "--json"]
    )
    check = next(c for c in json.loads(result.stdout)["checks"] if c["check"] == "dead_consumers")
    assert check["state"] == "OK"  # the default threshold waits 60 s of idleness
    assert result.exit_code in (0, 1)


def _pending(r: redis.Redis, stream: str) -> int:
    try:
        return int(r.xpending(stream, "chaos")["pending"])
    except redis.ResponseError:  # NOGROUP: the worker has not created the group yet
        return 0


def _dead(r: redis.Redis, stream: str) -> bool:
    return bool(collect(r, [stream], dead_after=0.3).streams[0].groups[0].dead_consumers)
