"""The demo's worker processes: real ``redrive worker`` processes, stopped by pid.

Each runs ``python -m redrive.cli --redis-url URL worker redrive.examples.ecommerce:app``
under its own consumer name, with its log in a temporary file (shown when it dies).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from redrive.examples.ecommerce import ENV_BASE_DELAY, ENV_BREAKER_OPEN, ENV_PREFIX, ENV_SEED

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
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_dir = Path(tempfile.mkdtemp(prefix="redrive-demo-"))

    def command(self, index: int) -> list[str]:
        """The argv of worker ``index``."""
        return [
            sys.executable, "-m", "redrive.cli",
            "--redis-url", self.redis_url,
            "--log-level", "warning",
            "worker", APP,
            # Per demo slot (demo-1, demo2-1, …): two demos at once never share a name.
            "--consumer", f"{self.prefix.rstrip(':') or 'demo'}-{index}",
            "--shutdown-timeout", str(SHUTDOWN_TIMEOUT),
        ]  # fmt: skip

    def start(self, count: int) -> None:
        """Start ``count`` more workers (numbered after those already started)."""
        for _ in range(count):
            index = len(self.procs) + 1
            with (self.log_dir / f"demo-{index}.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        self.command(index),
                        env=self.env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # a Ctrl-C goes to the demo, which stops them
                    )
                )

    def dead_worker(self) -> str | None:
        """A one-line description of a worker that exited early, else ``None``."""
        for index, proc in enumerate(self.procs, start=1):
            code = proc.poll()
            if code is not None:
                return f"worker demo-{index} exited with code {code}: {self._last_line(index)}"
        return None

    def stop(self) -> tuple[int | None, ...]:
        """SIGTERM all, wait for each (bounded), SIGKILL stragglers; return exit codes."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(SHUTDOWN_TIMEOUT + STOP_GRACE))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(None)  # did not drain in time
        self.procs = []
        if all(code == 0 for code in codes):
            shutil.rmtree(self.log_dir, ignore_errors=True)
        return tuple(codes)

    def kill(self) -> None:
        """SIGKILL every worker still running (cleanup after an error)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        self.procs = []
        with contextlib.suppress(OSError):
            self.log_dir.rmdir()  # only if empty: logs of a failed run are kept

    def _last_line(self, index: int) -> str:
        try:
            lines = (self.log_dir / f"demo-{index}.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        tail = next((line.strip() for line in reversed(lines) if line.strip()), "empty log")
        return f"{tail} (log: {self.log_dir / f'demo-{index}.log'})"
