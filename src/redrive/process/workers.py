"""``redrive worker`` subprocesses: started under consumer names, logged to files, stopped by pid.

One manager for everything that runs real worker processes: ``redrive demo``
(:mod:`redrive.demo.workers`), the simulator (:mod:`redrive.simulate.workers`), the chaos
tests and the benchmarks. Each worker runs ``python -m redrive.cli … worker MODULE:APP
--consumer NAME`` in a session of its own (a Ctrl-C or a signal reaches it only when sent
to its pid), with stdout and stderr in its own log file, which is what a caller shows
when a worker dies.

Example::

    workers = WorkerGroup(Path(tempfile.mkdtemp()))
    w1 = workers.start(worker_argv(url, "myapp:app", "w1"), consumer="w1")
    w1.pause()              # SIGSTOP: a worker frozen mid-batch (its claims go stale)
    w1.resume()             # SIGCONT
    w1.kill()               # SIGKILL, reaped: exit code -9
    workers.stop_all(15.0)  # SIGTERM the rest (they drain), SIGKILL stragglers
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from signal import Signals
from typing import Any

#: How long a SIGKILLed or stopped worker may take to be reaped.
REAP_TIMEOUT = 10.0


def worker_argv(
    redis_url: str,
    app: str,
    consumer: str,
    *,
    shutdown_timeout: float | None = None,
    log_format: str | None = None,
    log_level: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The argv of ``redrive worker APP --consumer CONSUMER`` run by this interpreter."""
    argv = [sys.executable, "-m", "redrive.cli", "--redis-url", redis_url]
    if log_format is not None:
        argv += ["--log-format", log_format]
    if log_level is not None:
        argv += ["--log-level", log_level]
    argv += ["worker", app, "--consumer", consumer]
    if shutdown_timeout is not None:
        argv += ["--shutdown-timeout", str(shutdown_timeout)]
    return [*argv, *extra]


def last_logged(log: Path) -> str:
    """The last message in a worker's log (of a JSON record: its ``msg``), with the path.

    Read from the file, so it works after the process is gone (what a caller reports
    when a worker died).
    """
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"no log ({log})"
    if not lines:
        return f"empty log ({log})"
    text = lines[-1]
    with contextlib.suppress(json.JSONDecodeError):
        record = json.loads(text)
        if isinstance(record, dict):
            text = str(record.get("msg", record.get("message", text)))
    return f"{text.strip()} (log: {log})"


class WorkerProcess:
    """One worker subprocess, its log file, and the signals chaos sends it.

    ``append=True`` adds to an existing log (a restart under the same name keeps the
    history); ``False`` starts the file afresh.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        consumer: str,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        append: bool = True,
    ) -> None:
        self.consumer = consumer
        self.log = log
        self.paused = False
        with log.open("ab" if append else "wb") as sink:
            self.proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals reach this worker only, never its parent
            )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """True until the process has exited."""
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once it exited (``-9`` after SIGKILL), else ``None``."""
        return self.proc.poll()

    def signal(self, sig: Signals) -> None:
        """Send ``sig`` to this worker's pid if it still runs (SIGSTOP/SIGCONT tracked)."""
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        if sig in (signal.SIGSTOP, signal.SIGCONT):
            self.paused = sig == signal.SIGSTOP

    def pause(self) -> None:
        """SIGSTOP: frozen as by a GC pause or a stopped VM; its leases stop renewing."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self.signal(signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM (SIGCONT first if paused): the worker drains, flushes and exits 0."""
        if self.paused:
            self.resume()
        self.signal(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL (SIGCONT first if paused) and reap it; return its exit code."""
        if self.paused:
            self.resume()
        self.signal(signal.SIGKILL)
        code = self.proc.wait(REAP_TIMEOUT)
        self.paused = False
        return code

    def wait(self, timeout: float) -> int:
        """Its exit code, waiting at most ``timeout`` s (``subprocess.TimeoutExpired``)."""
        return self.proc.wait(timeout)

    def tail(self, lines: int = 30) -> str:
        """The end of its log, for failure reports."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def last_line(self) -> str:
        """The last message it logged, with the log's path (see :func:`last_logged`)."""
        return last_logged(self.log)

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records written so far (``--log-format json``; other lines skipped)."""
        out = []
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        for line in text.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


class WorkerGroup:
    """The worker processes one caller started; every one is gone after ``kill_all``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        consumer: str,
        log_name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        append: bool = True,
    ) -> WorkerProcess:
        """Start a worker; its log is ``log_dir / log_name`` (default ``<consumer>.log``)."""
        log = self.log_dir / (log_name or f"{consumer}.log")
        worker = WorkerProcess(argv, consumer=consumer, log=log, env=env, cwd=cwd, append=append)
        self.workers.append(worker)
        return worker

    def exited(self) -> WorkerProcess | None:
        """The first worker that exited (on its own, or killed), else ``None``."""
        return next((w for w in self.workers if not w.alive), None)

    def stop_all(self, timeout: float) -> list[int | None]:
        """SIGTERM every worker, wait for all within ``timeout``; SIGKILL stragglers.

        Returns one exit code per worker in start order; ``None`` for a straggler (it
        did not drain in time). The group is empty afterwards.
        """
        for worker in self.workers:
            worker.terminate()
        deadline = time.monotonic() + timeout
        codes: list[int | None] = []
        for worker in self.workers:
            try:
                codes.append(worker.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                worker.kill()
                codes.append(None)
        self.workers = []
        return codes

    def kill_all(self) -> None:
        """SIGKILL every worker still running and reap it (cleanup after an error)."""
        for worker in self.workers:
            worker.kill()
        self.workers = []
