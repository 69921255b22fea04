"""``redrive simulate`` as a command: its summary, and what Ctrl-C and SIGTERM leave behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from redrive.simulate.chaos import WorkerStartError
from redrive.simulate.runner import SimOptions, run_simulation
from redrive.simulate.scenario import load_scenario
from redrive.testing import available_redis_binaries

pytestmark = pytest.mark.skipif(not available_redis_binaries(), reason="no redis-server")


def simulate(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "redrive.cli", "simulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def processes_marked(mark: str) -> list[int]:
    """Pids whose environment carries ``mark`` (the simulator's server and workers do)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if mark.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue  # gone, or not ours to read
    return found


def wait_gone(mark: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_the_summary_has_no_python_dicts() -> None:
    proc = simulate("smoke", "--messages", "200")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "producer: ok 200;" in out
    assert "{'" not in out


STOPPED = "stopped the workers and the private redis-server"


@pytest.mark.parametrize(("sig", "code", "line"), [
    (signal.SIGTERM, 143, f"interrupted by SIGTERM: {STOPPED}"),
    (signal.SIGINT, 130, f"interrupted: {STOPPED}"),
])  # fmt: skip
def test_a_signal_stops_every_process_with_one_line(
    sig: signal.Signals, code: int, line: str
) -> None:
    mark = f"REDRIVE_TEST_MARK=sim-{uuid.uuid4().hex}"
    key, _, value = mark.partition("=")
    proc = simulate(
        "smoke", "--messages", "50000", "--rate", "5000", env={**os.environ, key: value}
    )
    assert proc.stderr is not None
    try:
        for progress in proc.stderr:  # wait until the workers run and the load has begun
            if "publishing" in progress:
                break
        assert len(processes_marked(mark)) >= 3  # redis-server and two workers

        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # a failed test must not leave a simulation running
            proc.kill()
            proc.communicate()
        for pid in processes_marked(mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    assert proc.returncode == code
    assert rest.strip().splitlines() == [line]
    assert wait_gone(mark) == []


def test_a_worker_that_cannot_start_stops_the_run_with_its_cause() -> None:
    # Every worker dies at import (its settings are not JSON): once looped for 60 s.
    scenario = load_scenario("smoke").with_overrides(messages=50)
    started = time.monotonic()
    with pytest.raises(WorkerStartError, match=r"exited 3 times in a row .*JSON"):
        run_simulation(scenario, SimOptions(worker_env={"REDRIVE_SIM": "{not json"}))
    assert time.monotonic() - started < 30
