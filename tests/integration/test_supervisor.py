"""``redrive worker --processes N``: real supervisor, real children, real Redis.

The children run the chaos ledger app (``tests/chaos/apps/ledger.py``): every success is
one ``HINCRBY`` in a ledger hash, so a lost message is a missing ledger entry. The child
pids are read from their consumer-name leases (``redrive:consumer:NAME``), which a child
holds only once it has started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis
import redis.asyncio

from redrive import process
from redrive.process.spawned import tagged
from redrive.process.supervisor import RestartPolicy
from redrive.runtime.liveness import REAPED_ENV, NameLease, NameTaken
from redrive.store.keys import consumer_lease
from redrive.store.process import pid_alive
from tests.chaos.harness import (
    APP,
    ROOT,
    Outcome,
    Scenario,
    assert_no_loss,
    owned_by,
    produce,
    wait_until,
)

NAME = "sup"


@pytest.fixture
def scenario(redis_url: str, prefix: str) -> Scenario:
    return Scenario(prefix=prefix, url=redis_url)


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[list[process.WorkerProcess]]:
    """Supervisors started by a test; killed by pid at its end (their children follow)."""
    started: list[process.WorkerProcess] = []
    try:
        yield started
    finally:
        for sup in started:
            sup.kill()
            print(f"--- supervisor rc={sup.returncode}\n{sup.tail(60)}")


def supervise(
    scenario: Scenario,
    started: list[process.WorkerProcess],
    log: Path,
    *,
    processes: int = 2,
    app: str = APP,
    cwd: Path = ROOT,
    extra: Sequence[str] = (),
    **options: object,
) -> process.WorkerProcess:
    """``redrive worker APP --processes N --consumer sup`` with JSON logs in ``log``."""
    argv = process.worker_argv(
        scenario.url, app, NAME, log_format="json", shutdown_timeout=10.0,
        extra=["--processes", str(processes), *extra],
    )  # fmt: skip
    env = scenario.env(NAME, **options)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd), env.get("PYTHONPATH")]))
    sup = process.WorkerProcess(argv, consumer=NAME, log=log, env=env, cwd=cwd)
    started.append(sup)
    return sup


def lease_pid(r: redis.Redis, name: str) -> int | None:
    """The pid holding consumer name ``name`` (its lease is ``host pid token``)."""
    value = r.get(consumer_lease(name))
    return int(value.split()[1]) if value else None


def busy(r: redis.Redis, scenario: Scenario, *children: str) -> bool:
    """Every one of ``children`` has entries pending (False before the group exists)."""
    try:
        return all(owned_by(r, scenario, child) for child in children)
    except redis.ResponseError as exc:
        if "NOGROUP" in str(exc):
            return False
        raise


def messages(sup: process.WorkerProcess, child: str | None = None) -> list[str]:
    """The ``msg`` of the supervisor's JSON records, or of child ``child``'s."""
    return [r["msg"] for r in sup.records() if r.get("consumer") == child and "msg" in r]


def reading(sup: process.WorkerProcess, child: str) -> bool:
    """Child ``child`` has logged that it is consuming."""
    return any(m.startswith(f"worker {child} consuming") for m in messages(sup, child))


def test_a_child_killed_with_sigkill_is_replaced_within_a_second_and_nothing_is_lost(
    r: redis.Redis, scenario: Scenario, supervisors: list[process.WorkerProcess], tmp_path: Path
) -> None:
    # Arrange: a backlog, two children chewing through it, a batch in flight in each.
    # The visibility timeout is long: reclaiming by the other child cannot be what saves
    # the victim's entries, only its replacement re-reading its own pending list.
    produced = produce(r, scenario, ({"n": i} for i in range(300)))
    options = {"sleep": 0.01, "concurrency": 4, "prefetch": 8, "visibility": 60}
    sup = supervise(scenario, supervisors, tmp_path / "sup.log", **options)
    wait_until(lambda: lease_pid(r, "sup-1") and lease_pid(r, "sup-2"), "both children",
               alive=[sup])  # fmt: skip
    wait_until(lambda: r.hlen(scenario.ledger) >= 60, "60 successes", alive=[sup])

    # Act: kill -9 child 1 mid-batch.
    victim = lease_pid(r, "sup-1")
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    orphans = owned_by(r, scenario, "sup-1")
    assert orphans, "the victim held no pending entries: the kill proves nothing"
    assert r.hlen(scenario.ledger) < len(produced), "the kill landed after the backlog"

    # Assert: a replacement under the same name holds the name within a second (it took
    # the dead child's lease over instead of waiting for it to expire) ...
    def replaced() -> int | None:
        pid = lease_pid(r, "sup-1")
        return pid if pid != victim else None

    heir = wait_until(replaced, "the replacement", timeout=5, every=0.02, alive=[sup])
    replaced_in = time.monotonic() - killed_at
    assert replaced_in < 1.0, f"replaced after {replaced_in:.2f} s"
    # ... and every message succeeded, the victim's in-flight ones included.
    wait_until(lambda: Outcome.read(r, scenario).settled(produced), "every outcome", alive=[sup])
    outcome = Outcome.read(r, scenario)
    assert_no_loss(outcome, produced, dead={})
    assert orphans <= outcome.succeeded.keys(), outcome.report(produced)
    sup.terminate()
    assert sup.wait(20) == 0, sup.tail()
    assert any(
        m.startswith(f"sup-1 (pid {victim}) exited with SIGKILL")
        and m.endswith("restarting it now")
        for m in messages(sup)
    ), messages(sup)
    assert f"sup-1 runs in the standby (pid {heir})" in messages(sup), messages(sup)
    assert any("took over" in m for m in messages(sup, "sup-1")), messages(sup, "sup-1")
    print(f"replaced in {replaced_in * 1000:.0f} ms")


def test_sigterm_drains_every_child_and_the_supervisor_exits_0(
    r: redis.Redis, scenario: Scenario, supervisors: list[process.WorkerProcess], tmp_path: Path
) -> None:
    # Arrange: slow messages, so that each child has entries in flight at the signal.
    produced = produce(r, scenario, ({"n": i} for i in range(16)))
    options = {"sleep": 0.5, "concurrency": 2, "prefetch": 2}
    sup = supervise(scenario, supervisors, tmp_path / "sup.log", **options)
    wait_until(lambda: busy(r, scenario, "sup-1", "sup-2"), "both children busy", alive=[sup])
    in_flight = owned_by(r, scenario, "sup-1") | owned_by(r, scenario, "sup-2")

    # Act
    sup.terminate()
    started = time.monotonic()
    code = sup.wait(20)

    # Assert: exit 0, well before a kill; every child finished and acked its in-flight
    # entries, gave its name back, and nothing is left pending.
    assert code == 0, sup.tail()
    assert time.monotonic() - started < 5
    done = Outcome.read(r, scenario)
    assert in_flight <= done.succeeded.keys(), done.report(produced)
    assert done.pending == 0, done.report(produced)
    assert not owned_by(r, scenario, "sup-1") and not owned_by(r, scenario, "sup-2")
    assert lease_pid(r, "sup-1") is None and lease_pid(r, "sup-2") is None
    assert any(m.startswith("SIGTERM: stopping 2 children") for m in messages(sup))
    # Not lost either: what was never delivered is still in the stream for the next run.
    [group] = r.xinfo_groups(scenario.keys.stream)
    undelivered = r.xrange(scenario.keys.stream, min=f"({group['last-delivered-id'].decode()}")
    assert len(done.succeeded) + len(undelivered) == len(produced), done.report(produced)


def test_ctrl_c_at_the_terminal_reaches_every_child_once_and_all_exit_0(
    r: redis.Redis, scenario: Scenario, supervisors: list[process.WorkerProcess], tmp_path: Path
) -> None:
    # A Ctrl-C is SIGINT to the terminal's whole foreground process group. The children
    # are in groups of their own, so they get it once, from the supervisor; had they got
    # it twice, the second could land after an idle child drained (exit by SIGINT).
    sup = supervise(scenario, supervisors, tmp_path / "sup.log")
    wait_until(lambda: reading(sup, "sup-1") and reading(sup, "sup-2"), "both children",
               alive=[sup])  # fmt: skip
    children = [lease_pid(r, "sup-1"), lease_pid(r, "sup-2")]
    assert all(pid and os.getpgid(pid) != sup.pid for pid in children)

    os.killpg(sup.pid, signal.SIGINT)  # the supervisor leads its own group (a new session)

    assert sup.wait(20) == 0, sup.tail()
    assert any(m.startswith("SIGINT: stopping 2 children") for m in messages(sup))


def test_a_child_that_crashes_at_import_stops_the_supervisor_with_one_line(
    r: redis.Redis, scenario: Scenario, supervisors: list[process.WorkerProcess], tmp_path: Path
) -> None:
    (tmp_path / "boom_app.py").write_text("raise RuntimeError('boom at import')\n")
    started = time.monotonic()
    sup = supervise(scenario, supervisors, tmp_path / "sup.log", app="boom_app:app", cwd=tmp_path)
    code = sup.wait(20)
    elapsed = time.monotonic() - started

    # One line naming the child, its exit code and its own error; exit 2, within seconds.
    assert code == 2, sup.tail()
    last = sup.tail(1)
    assert last.startswith("Error: child sup-"), sup.tail()
    assert "exited 3 times in a row within 5 s of its start (a crash loop)" in last
    assert "exit code 2: Error: cannot import 'boom_app': RuntimeError: boom at import" in last
    assert elapsed < 10
    assert sum("crash loop" in line for line in sup.tail(200).splitlines()) == 1
    # No restart storm: each child ran at most 3 times, and so did the standby.
    crashes = [line for line in sup.tail(200).splitlines() if "] Error: cannot import" in line]
    assert 3 <= len(crashes) <= 9, crashes
    assert "Traceback" not in sup.tail(200)


def test_children_do_not_outlive_a_supervisor_killed_with_sigkill(
    r: redis.Redis, scenario: Scenario, supervisors: list[process.WorkerProcess], tmp_path: Path
) -> None:
    sup = supervise(scenario, supervisors, tmp_path / "sup.log")
    wait_until(lambda: reading(sup, "sup-1") and reading(sup, "sup-2"), "both children",
               alive=[sup])  # fmt: skip
    children = [lease_pid(r, "sup-1"), lease_pid(r, "sup-2")]

    sup.kill()

    # Linux sends each child SIGTERM (PR_SET_PDEATHSIG): they drain, give their names back
    # and exit, instead of running on as orphans holding the names.
    wait_until(lambda: not any(pid_alive(pid) for pid in children if pid), "the children gone")
    assert lease_pid(r, "sup-1") is None and lease_pid(r, "sup-2") is None


def free_port_pair() -> int:
    """A port P such that P and P + 1 are both free right now."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return int(port)
    raise AssertionError("no two consecutive free ports")


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            return str(reply.read().decode())
    except OSError:
        return ""


def test_child_i_serves_its_metrics_on_the_port_plus_i_minus_1(
    scenario: Scenario, supervisors: list[process.WorkerProcess], tmp_path: Path
) -> None:
    port = free_port_pair()
    argv = ["--metrics-port", str(port)]
    sup = supervise(scenario, supervisors, tmp_path / "sup.log", extra=argv)
    for i in (1, 2):
        wait_until(lambda: f'consumer="sup-{i}"' in scrape(port + i - 1),  # noqa: B023
                   f"sup-{i}'s metrics on {port + i - 1}", alive=[sup])  # fmt: skip
    assert 'consumer="sup-2"' not in scrape(port)
    sup.terminate()
    assert sup.wait(20) == 0, sup.tail()


def test_child_output_names_the_child_in_text_and_in_json() -> None:
    assert tagged("w-2", b"2026-01-01 INFO redrive.worker: hello\n") == (
        "[w-2] 2026-01-01 INFO redrive.worker: hello"
    )
    assert tagged("w-2", b'{"msg": "hello", "level": "info"}\n') == (
        '{"msg": "hello", "level": "info", "consumer": "w-2"}'
    )
    assert tagged("w-2", b"{not json\n") == "[w-2] {not json"


def test_restart_backoff_doubles_after_the_second_fast_exit() -> None:
    policy = RestartPolicy(backoff=0.5, max_backoff=1.5)
    assert [policy.delay(k) for k in (0, 1, 2, 3, 4)] == [0.0, 0.0, 0.5, 1.0, 1.5]


async def test_a_reaped_workers_lease_is_taken_over_even_if_its_pid_runs_again(
    aredis: redis.asyncio.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A live process stands in for a reused pid: without the supervisor's word the name
    # is refused (same host, live pid); with it, the name is taken over at once.
    name = f"{prefix}sup-1"
    stand_in = subprocess.Popen(["sleep", "30"])
    try:
        holder = f"{socket.gethostname()} {stand_in.pid} deadbeef"
        await aredis.set(consumer_lease(name), holder, px=6000)
        with pytest.raises(NameTaken):
            await NameLease(aredis, name).claim()
        monkeypatch.setenv(REAPED_ENV, f"{stand_in.pid} {prefix}sup-2")  # another name's
        with pytest.raises(NameTaken):
            await NameLease(aredis, name).claim()
        monkeypatch.setenv(REAPED_ENV, f"{stand_in.pid} {name}")
        started = time.monotonic()
        lease = NameLease(aredis, name)
        await lease.claim()
        assert time.monotonic() - started < 1
        assert (await aredis.get(consumer_lease(name))).decode() == lease.token
        await lease.release()
    finally:
        stand_in.kill()
        stand_in.wait()


def test_a_child_that_fails_its_shutdown_makes_the_supervisor_exit_1_naming_it(
    scenario: Scenario, supervisors: list[process.WorkerProcess], tmp_path: Path
) -> None:
    (tmp_path / "bad_exit_app.py").write_text(
        "from redrive import App\n"
        "app = App()\n"
        f"@app.handler({scenario.prefix + 'orders'!r}, group='g')\n"
        "async def handle(msg):\n    pass\n"
        "@app.on_shutdown\n"
        "async def close(ctx):\n    raise RuntimeError('cannot close the pool')\n"
    )
    sup = supervise(
        scenario, supervisors, tmp_path / "sup.log", app="bad_exit_app:app", cwd=tmp_path
    )
    wait_until(lambda: reading(sup, "sup-1") and reading(sup, "sup-2"), "both children",
               alive=[sup])  # fmt: skip
    sup.terminate()
    assert sup.wait(20) == 1, sup.tail()
    last = sup.tail(1)
    assert last.startswith("Error: not every child stopped cleanly: sup-"), last
    assert last.count("exited with exit code 2") == 2, last
