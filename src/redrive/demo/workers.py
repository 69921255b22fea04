"""The demo's worker processes: real ``redrive worker`` processes, stopped by pid.

Each runs ``python -m redrive.cli --redis-url URL worker redrive.examples.ecommerce:app``
under its own consumer name, with its log in a temporary file (shown when it dies).
The processes themselves are managed by :mod:`redrive.process`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from redrive.examples.ecommerce import ENV_BASE_DELAY, ENV_BREAKER_OPEN, ENV_PREFIX, ENV_SEED
from redrive.process import WorkerGroup, WorkerProcess, worker_argv

APP = "redrive.examples.ecommerce:app"
SHUTDOWN_TIMEOUT = 5.0
# Beyond the workers' own shutdown timeout: interpreter exit, final flush.
STOP_GRACE = 10.0


class WorkerPool:
    """Worker processes of the demo; ``kill`` is safe to call at any time."""

    def __init__(self, redis_url: str, *, seed: int, base_delay: float, prefix: str = "") -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.env = {
            **os.environ,
            ENV_BASE_DELAY: str(base_delay),
            ENV_SEED: str(seed),
            ENV_PREFIX: prefix,  # the demo's streams: demo:ecommerce:orders, …
            # A pause of the circuit breaker scaled to the demo's time scale.
            ENV_BREAKER_OPEN: str(max(0.5, base_delay * 2)),
        }
        self.log_dir = Path(tempfile.mkdtemp(prefix="redrive-demo-"))
        self.group = WorkerGroup(self.log_dir)

    @property
    def procs(self) -> list[WorkerProcess]:
        """The workers started and not yet stopped, in start order."""
        return self.group.workers

    def consumer(self, index: int) -> str:
        """Worker ``index``'s consumer name, per demo slot (``demo-1``, ``demo2-1``, …):
        two demos at once never share a name."""
        return f"{self.prefix.rstrip(':') or 'demo'}-{index}"

    def command(self, index: int) -> list[str]:
        """The argv of worker ``index``."""
        return worker_argv(
            self.redis_url,
            APP,
            self.consumer(index),
            log_level="warning",
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )

    def start(self, count: int) -> None:
        """Start ``count`` more workers (numbered after those already started)."""
        for _ in range(count):
            index = len(self.procs) + 1
            self.group.start(
                self.command(index),
                consumer=self.consumer(index),
                log_name=f"demo-{index}.log",
                env=self.env,
                append=False,
            )

    def dead_worker(self) -> str | None:
        """A one-line description of a worker that exited early, else ``None``."""
        for index, worker in enumerate(self.procs, start=1):
            code = worker.returncode
            if code is not None:
                return f"worker demo-{index} exited with code {code}: {worker.last_line()}"
        return None

    def stop(self) -> tuple[int | None, ...]:
        """SIGTERM all, wait for each (bounded), SIGKILL stragglers; return exit codes."""
        codes = self.group.stop_all(SHUTDOWN_TIMEOUT + STOP_GRACE)
        if all(code == 0 for code in codes):
            shutil.rmtree(self.log_dir, ignore_errors=True)
        return tuple(codes)

    def kill(self) -> None:
        """SIGKILL every worker still running (cleanup after an error)."""
        self.group.kill_all()
        with contextlib.suppress(OSError):
            self.log_dir.rmdir()  # only if empty: logs of a failed run are kept
