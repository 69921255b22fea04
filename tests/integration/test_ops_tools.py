"""Operator tools during an incident: no Redis started by a reader, no OK for nothing
checked, exporters and dashboards that outlive Redis, loopback by default, warnings first."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rich.console import Console

from redrive import App
from redrive.cli.worker import worker as worker_command
from redrive.monitoring.live import monitor_client, watch
from redrive.monitoring.prometheus import serve_worker_metrics
from redrive.monitoring.thresholds import HealthConfig
from redrive.store import keys
from redrive.store.acl import acl_rules
from redrive.store.connection import async_client
from redrive.store.embedded import EmbeddedServer
from redrive.store.retention import Retention, apply_retention
from redrive.testing import RedisProcess, free_port
from tests.chaos.harness import wait_until
from tests.integration.dlq_support import record, run_cli
from tests.integration.helpers import running, until


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A short data dir (unix socket paths are limited), its server stopped by pid after."""
    path = Path(tempfile.mkdtemp(prefix="rdops"))
    try:
        yield path
    finally:
        EmbeddedServer(path).stop()
        shutil.rmtree(path, ignore_errors=True)


def test_health_that_checked_nothing_is_unknown_not_ok(redis_url: str, r: redis.Redis) -> None:
    if not redis_url.endswith("/0"):
        pytest.skip("needs a database of its own on a private server")
    empty = redis_url[: -len("/0")] + "/9"  # no worker has ever run against db 9

    code, out, err = run_cli(["--redis-url", empty, "health"])
    assert code == 3, err
    assert out.startswith("UNKNOWN: no stream to check at redis://"), out
    code, out, _ = run_cli(["--redis-url", empty, "health", "--json"])
    report = json.loads(out)
    assert (code, report["state"], report["checks"]) == (3, "UNKNOWN", [])
    assert "--redis-url" in report["reason"]
    assert not redis.Redis.from_url(empty).exists(keys.HEALTH_STATE), "nothing recorded"
    # A mistyped --stream on a server with streams is no more OK than no stream at all.
    code, out, _ = run_cli(["--redis-url", redis_url, "health", "--stream", "no-such:stream"])
    assert code == 3 and out.startswith("UNKNOWN: nothing named no-such:stream at "), out


def test_readers_use_a_running_embedded_server_and_never_start_one(data_dir: Path) -> None:
    dd = ["--data-dir", str(data_dir)]
    code, _, err = run_cli([*dd, "health"])
    assert code == 3 and "REDRIVE_REDIS_URL" in err and "redrive server start" in err
    assert not (data_dir / "redis.sock").exists()

    url = EmbeddedServer(data_dir).start()
    client = redis.Redis(unix_socket_path=url.removeprefix("unix://"))
    client.xgroup_create("shop:orders", "g", id="0", mkstream=True)
    client.sadd(keys.STREAMS_INDEX, "shop:orders")
    client.close()
    code, out, err = run_cli([*dd, "health", "--no-alerts"])
    assert code == 0 and "shop:orders" in out, err
    code, out, err = run_cli([*dd, "metrics", "--once"])
    assert code == 0 and 'redrive_stream_length_messages{stream="shop:orders"} 0.0' in out


async def test_a_worker_with_no_url_names_the_embedded_server_in_a_warning(
    data_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDRIVE_REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")  # the classic typo
    app = App(data_dir=data_dir)

    @app.handler("shop:orders", group="g")
    async def handle(msg):  # type: ignore[no-untyped-def]
        pass

    with caplog.at_level(logging.WARNING, logger="redrive.embedded"):
        async with running(app, None, block_ms=50):  # type: ignore[arg-type]
            await until(lambda: bool(caplog.records), what="the warning")
    (warning,) = [r for r in caplog.records if r.name == "redrive.embedded"]
    text = warning.getMessage()
    assert warning.levelno == logging.WARNING
    assert f"embedded Redis at unix://{data_dir}/redis.sock" in text
    assert "REDIS_URL set: did you mean REDRIVE_REDIS_URL?" in text


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        return str(reply.read().decode())


def _up(port: int) -> str:
    return next(line for line in _scrape(port).splitlines() if line.startswith("redrive_up "))


def test_metrics_server_serves_redrive_up_0_through_an_outage() -> None:
    with RedisProcess() as server:
        server.stop()  # down before the exporter starts; same port when it comes back
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "REDRIVE_REDIS_URL"}
        exporter = subprocess.Popen(
            [sys.executable, "-m", "redrive.cli", "--redis-url", server.url, "metrics",
             "--port", str(port)],
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            wait_until(lambda: _try(_up, port), "the exporter to answer")
            assert _up(port) == "redrive_up 0.0"
            server.start()
            assert _up(port) == "redrive_up 1.0"
            server.stop()
            assert [_up(port) for _ in range(3)] == ["redrive_up 0.0"] * 3
        finally:
            exporter.terminate()
            _, err = exporter.communicate(timeout=10)
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    # One warning per change of state: down (at start), up again, down again.
    assert sum("Redis unreachable, serving redrive_up 0" in line for line in lines) == 2, err
    assert sum("Redis answers again" in line for line in lines) == 1, err
    assert "(Redis unreachable: redrive_up 0)" in err, "the start-up check says so"


def _try(probe: object, *args: object) -> bool:
    try:
        probe(*args)  # type: ignore[operator]
    except OSError:
        return False
    return True


def test_monitor_shows_since_when_redis_is_unreachable_and_recovers() -> None:
    with RedisProcess() as server:
        redis.Redis.from_url(server.url).sadd(keys.STREAMS_INDEX, "shop:orders")
        screen = io.StringIO()
        console = Console(file=screen, force_terminal=True, width=100)
        stop = threading.Event()
        with monitor_client(server.url, timeout=2.0) as client:
            loop = threading.Thread(
                target=watch, args=(client, console, HealthConfig()),
                kwargs={"interval": 0.05, "url": server.url, "stop": stop},
            )  # fmt: skip
            loop.start()
            try:
                wait_until(lambda: "shop:orders" in screen.getvalue(), "a first frame")
                server.stop()
                wait_until(lambda: "Redis unreachable since" in screen.getvalue(), "the banner")
                after_banner = len(screen.getvalue())
                assert "retrying" in screen.getvalue()
                server.start()
                wait_until(
                    lambda: (
                        "redrive monitor" in screen.getvalue()[after_banner:]
                        and "unreachable" not in screen.getvalue()[-400:]
                    ),
                    "a fresh frame after the outage",
                )
            finally:
                stop.set()
                loop.join(timeout=10)
        assert not loop.is_alive(), "the loop survived the outage and stopped when told"


def test_worker_metrics_listen_on_loopback_unless_told() -> None:
    option = next(p for p in worker_command.params if p.name == "metrics_host")
    assert option.default == "127.0.0.1"
    server = serve_worker_metrics(0)
    if server is None:
        pytest.skip("prometheus_client < 0.20 does not return its server")
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()


def test_health_and_monitor_take_window_and_dead_after(
    redis_url: str, r: redis.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    r.xgroup_create(stream, "g", id="0", mkstream=True)
    r.xadd(stream, {"data": "{}"})
    r.xreadgroup("g", "c1", {stream: ">"})  # pending under c1, which then goes quiet
    time.sleep(0.05)
    base = ["--redis-url", redis_url, "health", "--no-alerts", "--json", "--stream", stream]

    def dead(*extra: str) -> str:
        _, out, _ = run_cli([*base, *extra])
        return next(c["state"] for c in json.loads(out)["checks"] if c["check"] == "dead_consumers")

    assert dead() == "OK"
    assert dead("--dead-after", "0.01") == "WARN"
    _, out, _ = run_cli([*base, "--window", "7"])
    assert "over 7 s" in json.dumps(json.loads(out))
    code, out, err = run_cli(
        ["--redis-url", redis_url, "monitor", "--once", "--window", "7", "--dead-after", "0.01",
         "--stream", stream]
    )  # fmt: skip
    assert code == 0, err
    assert "window 7s" in out and "(1 dead)" in out


async def test_retention_warns_before_it_evicts_and_early_enough_for_a_short_max_age(
    redis_url: str, r: redis.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    dlq = keys.dlq(stream)
    now = int(time.time() * 1000)
    for i, age_ms in enumerate((9_000, 2_000)):  # one past max_age=5 s, one 3 s before it
        r.execute_command("XADD", dlq, f"{now - age_ms}-0", *record(stream, f"1-{i}"))
    seen: list[tuple[str, int]] = []

    class Witness(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            seen.append((rec.getMessage(), int(r.xlen(dlq))))  # what exists when it is said

    witness = Witness()
    logging.getLogger("redrive.dlq.retention").addHandler(witness)
    client = async_client(redis_url)
    try:
        done = await apply_retention(client, stream, Retention(max_age=5), now_ms=now)
    finally:
        logging.getLogger("redrive.dlq.retention").removeHandler(witness)
        await client.aclose()
    # 0.1 x 5 s would warn 0.5 s ahead: less than one 10 s pass. The floor is 30 s.
    assert (done.evicted, done.expiring) == (1, 1)
    assert [n for _, n in seen] == [2, 2], "both warnings while both entries still exist"
    assert "will age out within 5s" in seen[0][0]
    assert "retention evicts 1 dead letters" in seen[1][0]
    assert r.xlen(dlq) == 1


def test_server_start_applies_appendfsync_to_a_running_server(data_dir: Path) -> None:
    url = EmbeddedServer(data_dir).start()
    client = redis.Redis(unix_socket_path=url.removeprefix("unix://"), decode_responses=True)
    assert client.config_get("appendfsync")["appendfsync"] == "everysec"

    code, out, err = run_cli(["--data-dir", str(data_dir), "server", "start", "--appendfsync",
                              "always"])  # fmt: skip
    assert code == 0, err
    assert "appendfsync changed from everysec to always" in out
    assert client.config_get("appendfsync")["appendfsync"] == "always"
    client.close()
    EmbeddedServer(data_dir).stop()
    EmbeddedServer(data_dir).start()  # no policy given: the last one is kept
    again = redis.Redis(unix_socket_path=url.removeprefix("unix://"), decode_responses=True)
    assert again.config_get("appendfsync")["appendfsync"] == "always"
    again.close()


def test_the_monitor_grant_binds_hset_to_the_health_state_where_redis_can() -> None:
    on_7 = acl_rules("monitor", streams=["shop:*"], redis_version=(7, 0, 15))
    on_6 = acl_rules("monitor", streams=["shop:*"], redis_version=(6, 2, 14))
    for rules in (on_7, on_6):
        assert {"+watch", "+multi", "+exec"} <= set(rules)
    assert on_7[-1] == f"(~{keys.HEALTH_STATE} +hset)" and "+hset" not in on_7
    assert on_6[-1] == "+hset"
    assert "+hset" not in acl_rules("monitor", streams=["x"])[:-1], "only the last rule grants it"


def test_security_md_prints_the_rules_acl_rules_builds() -> None:
    text = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    users = {"orders-worker": "worker", "dlq-operator": "operator", "redrive-monitor": "monitor"}
    for user, role in users.items():
        line = next(ln for ln in text.splitlines() if ln.startswith(f"ACL SETUSER {user} "))
        printed = line.split(" ", 5)[5]  # after "ACL SETUSER <user> on >PASSWORD"
        assert printed == " ".join(acl_rules(role, streams=["ecommerce:*"])), role


@pytest.mark.parametrize(("command", "code"), [("health", 3), ("monitor", 2)])
def test_an_unexpected_error_is_one_line_naming_it_a_bug(
    command: str, code: int, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(f"redrive.cli.{command}.take", broken)
    argv = ["--redis-url", redis_url, command, *(["--once"] if command == "monitor" else [])]
    exit_code, _, err = run_cli(argv)
    assert exit_code == code
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "unexpected KeyError: 'surprise'" in err and "--log-level debug" in err
    exit_code, _, err = run_cli(["--log-level", "debug", *argv])
    assert exit_code == code and "Traceback" in err, "debug shows where it came from"
