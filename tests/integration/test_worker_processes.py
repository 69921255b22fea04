"""``redrive.process``: subprocesses under consumer names, logs in files, signals by pid.

The processes here are small Python scripts standing in for ``redrive worker`` (the
demo, simulator and chaos tests run the real one through the same class): what is
checked is the manager's own behaviour — log capture, SIGSTOP/SIGCONT, kill -9, a
straggler that ignores SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from redrive.process import WorkerGroup, WorkerProcess, last_logged, worker_argv

#: Logs one JSON line, then waits for SIGTERM and exits 0 (as a worker drains).
DRAINS = """
import json, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(json.dumps({"msg": "worker %s consuming" % sys.argv[1]}), flush=True)
while True:
    time.sleep(0.01)
"""
#: Ignores SIGTERM: only SIGKILL stops it.
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
while True:
    time.sleep(0.01)
"""


def script(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def wait_for(probe, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def state(pid: int) -> str:
    """The process state letter from procfs (``T`` while stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_worker_argv_is_the_worker_command_of_this_interpreter() -> None:
    argv = worker_argv("redis://h:1/0", "shop:app", "w1", shutdown_timeout=5.0, log_format="json")
    assert argv == [
        sys.executable, "-m", "redrive.cli", "--redis-url", "redis://h:1/0",
        "--log-format", "json", "worker", "shop:app", "--consumer", "w1",
        "--shutdown-timeout", "5.0",
    ]  # fmt: skip


def test_a_worker_logs_to_its_file_and_drains_on_sigterm(tmp_path: Path) -> None:
    group = WorkerGroup(tmp_path)
    worker = group.start(script(DRAINS, "w1"), consumer="w1")
    wait_for(worker.records, "its first log line")
    assert worker.records() == [{"msg": "worker w1 consuming"}]
    assert worker.last_line() == f"worker w1 consuming (log: {tmp_path / 'w1.log'})"
    assert group.exited() is None
    assert group.stop_all(10.0) == [0]
    assert group.workers == []


def test_pause_resume_and_kill_by_pid(tmp_path: Path) -> None:
    worker = WorkerProcess(script(DRAINS, "w1"), consumer="w1", log=tmp_path / "w1.log")
    wait_for(worker.records, "it to start")
    worker.pause()
    wait_for(lambda: state(worker.pid) == "T", "SIGSTOP to take effect")
    assert worker.paused and worker.alive
    worker.resume()
    wait_for(lambda: state(worker.pid) != "T", "SIGCONT to take effect")
    worker.pause()  # killed while stopped: SIGCONT first, then SIGKILL, and reaped
    assert worker.kill() == -signal.SIGKILL
    assert not worker.alive and worker.returncode == -signal.SIGKILL
    worker.signal(signal.SIGTERM)  # a signal to a gone worker is a no-op, not an error


def test_a_straggler_is_killed_and_reported_as_none(tmp_path: Path) -> None:
    group = WorkerGroup(tmp_path)
    drains = group.start(script(DRAINS, "w1"), consumer="w1")
    stubborn = group.start(script(STUBBORN), consumer="w2")
    wait_for(lambda: drains.records() and stubborn.tail(), "both to start")
    started = time.monotonic()
    assert group.stop_all(0.5) == [0, None]
    assert time.monotonic() - started < 5
    assert stubborn.returncode == -signal.SIGKILL


def test_a_dead_worker_is_found_and_its_last_line_read_after_it_is_gone(tmp_path: Path) -> None:
    group = WorkerGroup(tmp_path)
    crash = "import sys; print('ImportError: no module named shop', flush=True); sys.exit(3)"
    worker = group.start(script(crash), consumer="w1", log_name="first.log")
    wait_for(lambda: not worker.alive, "it to exit")
    assert group.exited() is worker and worker.returncode == 3
    log = tmp_path / "first.log"
    assert last_logged(log) == f"ImportError: no module named shop (log: {log})"
    # A restart under the same name appends to the same log (append=True, the default).
    again = group.start(script(crash), consumer="w1", log_name="first.log")
    wait_for(lambda: not again.alive, "the restart to exit")
    assert log.read_text().count("ImportError") == 2
    group.kill_all()
    assert json.dumps(last_logged(tmp_path / "none.log")).startswith('"no log')
