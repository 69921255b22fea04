"""The simulator's worker processes: real ``redrive worker`` processes, one per slot.

Slot *i* always talks to Redis through proxy *i*, so a network fault can target one
worker. A slot's process may be killed, stopped, continued and restarted under the same
consumer name or a new one (``w2`` → ``w2r1``); every process is stopped by its pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from redrive.process import WorkerProcess, last_logged, worker_argv
from redrive.simulate.faults import ENV_FAULTS, ENV_SALT
from redrive.simulate.scenario import HandlerSettings
from redrive.simulate.worker_app import ENV_SIM, sim_env

APP = "redrive.simulate.worker_app:app"
SHUTDOWN_TIMEOUT = 5.0
STOP_GRACE = 10.0


@dataclass(slots=True)
class Slot:
    """One worker position: its proxy URL, current process and consumer name."""

    index: int
    url: str
    name: str
    proc: WorkerProcess | None = None
    incarnation: int = 0
    renames: int = 0
    exits: list[int] = field(default_factory=list)
    failed_starts: int = 0  # exits on its own in a row, soon after a start
    started: float = 0.0  # time.monotonic() of the last spawn

    @property
    def alive(self) -> bool:
        """True while the current process runs."""
        return self.proc is not None and self.proc.alive

    @property
    def stopped(self) -> bool:
        """True while the current process is SIGSTOPped."""
        return self.proc is not None and self.proc.paused


class WorkerPool:
    """Starts, hurts and stops the simulated workers."""

    def __init__(
        self,
        urls: list[str],
        *,
        prefix: str,
        seed: int,
        handler: HandlerSettings,
        faults_json: str | None,
        log_dir: Path,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.slots = [Slot(i + 1, url, f"w{i + 1}") for i, url in enumerate(urls)]
        self.prefix = prefix
        self.seed = seed
        self.handler = handler
        self.faults_json = faults_json
        self.log_dir = log_dir
        self.extra_env = dict(extra_env or {})

    def slot(self, index: int) -> Slot:
        """Slot ``index`` (1-based)."""
        return self.slots[index - 1]

    def start_all(self) -> None:
        """Start one worker per slot."""
        for slot in self.slots:
            self.spawn(slot)

    def spawn(self, slot: Slot, *, new_name: bool = False) -> None:
        """Start (or restart) ``slot``'s worker, optionally under a new consumer name."""
        if slot.proc is not None:  # never orphan a running worker: replacing it kills it
            self.kill(slot)
        if new_name:
            slot.renames += 1
            slot.name = f"w{slot.index}r{slot.renames}"
        slot.incarnation += 1
        env = {k: v for k, v in os.environ.items() if k not in (ENV_FAULTS, "REDRIVE_REDIS_URL")}
        env[ENV_SIM] = sim_env(self.prefix, self.seed, slot.name, self.handler)
        env[ENV_SALT] = f"{slot.name}:{slot.incarnation}"
        env.update(self.extra_env)
        if self.faults_json:
            env[ENV_FAULTS] = self.faults_json
        argv = worker_argv(
            slot.url,
            APP,
            slot.name,
            log_format="json",
            log_level="warning",
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        # Appended: a restart under the same name keeps the earlier incarnations' log.
        slot.proc = WorkerProcess(
            argv, consumer=slot.name, log=self.log_dir / f"{slot.name}.log", env=env
        )
        slot.started = slot.proc.started

    def last_log_line(self, slot: Slot) -> str:
        """The last message ``slot``'s worker logged (JSON lines: their ``msg``)."""
        return last_logged(self.log_dir / f"{slot.name}.log")  # also once the process is gone

    def kill(self, slot: Slot) -> None:
        """SIGKILL ``slot``'s worker (SIGCONT first if stopped) and reap it."""
        if slot.proc is None:
            return
        slot.exits.append(slot.proc.kill())
        slot.proc = None

    def signal(self, slot: Slot, sig: signal.Signals) -> None:
        """Send ``sig`` to ``slot``'s worker (SIGSTOP / SIGCONT)."""
        if slot.proc is not None:
            slot.proc.signal(sig)

    def reap_crashed(self) -> list[Slot]:
        """Slots whose worker exited on its own (an injected crash); their exit recorded."""
        crashed = []
        for slot in self.slots:
            if slot.proc is not None and (code := slot.proc.returncode) is not None:
                slot.exits.append(code)
                slot.proc = None
                crashed.append(slot)
        return crashed

    def stop_all(self) -> list[int | None]:
        """SIGTERM every worker (they drain and exit 0); SIGKILL stragglers."""
        for slot in self.slots:
            if slot.proc is not None:
                slot.proc.terminate()  # SIGCONT first if stopped
        codes: list[int | None] = []
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT + STOP_GRACE
        for slot in self.slots:
            proc, slot.proc = slot.proc, None
            if proc is None:
                codes.append(None)
                continue
            try:
                codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(None)
        return codes

    def kill_all(self) -> None:
        """SIGKILL every worker still running (cleanup after an error)."""
        for slot in self.slots:
            self.kill(slot)
