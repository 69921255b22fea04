"""The simulator's worker processes: real ``redrive worker`` processes, one per slot.

Slot *i* always talks to Redis through proxy *i*, so a network fault can target one
worker. A slot's process may be killed, stopped, continued and restarted under the same
consumer name or a new one (``w2`` → ``w2r1``); every process is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
    proc: subprocess.Popen[bytes] | None = None
    incarnation: int = 0
    renames: int = 0
    stopped: bool = False
    exits: list[int] = field(default_factory=list)
    failed_starts: int = 0  # exits on its own in a row, soon after a start
    started: float = 0.0  # time.monotonic() of the last spawn

    @property
    def alive(self) -> bool:
        """True while the current process runs."""
        return self.proc is not None and self.proc.poll() is None


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
        argv = [
            sys.executable, "-m", "redrive.cli", "--redis-url", slot.url,
            "--log-format", "json", "--log-level", "warning",
            "worker", APP, "--consumer", slot.name,
            "--shutdown-timeout", str(SHUTDOWN_TIMEOUT),
        ]  # fmt: skip
        with (self.log_dir / f"{slot.name}.log").open("ab") as log:
            slot.proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals reach this worker only
            )
        slot.stopped = False
        slot.started = time.monotonic()

    def last_log_line(self, slot: Slot) -> str:
        """The last message ``slot``'s worker logged (JSON lines: their ``message``)."""
        path = self.log_dir / f"{slot.name}.log"
        try:
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return f"no log ({path})"
        if not lines:
            return f"empty log ({path})"
        try:
            record = json.loads(lines[-1])
            text = str(record.get("message", lines[-1])) if isinstance(record, dict) else lines[-1]
        except json.JSONDecodeError:
            text = lines[-1]
        return f"{text.strip()} (log: {path})"

    def kill(self, slot: Slot) -> None:
        """SIGKILL ``slot``'s worker and reap it."""
        proc = slot.proc
        if proc is None:
            return
        if slot.stopped:
            self.signal(slot, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        slot.exits.append(proc.wait(10))
        slot.proc = None

    def signal(self, slot: Slot, sig: signal.Signals) -> None:
        """Send ``sig`` to ``slot``'s worker (SIGSTOP / SIGCONT)."""
        if slot.proc is not None and slot.alive:
            os.kill(slot.proc.pid, sig)
            slot.stopped = sig == signal.SIGSTOP

    def reap_crashed(self) -> list[Slot]:
        """Slots whose worker exited on its own (an injected crash); their exit recorded."""
        crashed = []
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is not None:
                slot.exits.append(int(slot.proc.returncode))
                slot.proc = None
                crashed.append(slot)
        return crashed

    def stop_all(self) -> list[int | None]:
        """SIGTERM every worker (they drain and exit 0); SIGKILL stragglers."""
        for slot in self.slots:
            if slot.stopped:
                self.signal(slot, signal.SIGCONT)
            if slot.alive and slot.proc is not None:
                slot.proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT + STOP_GRACE
        for slot in self.slots:
            proc = slot.proc
            if proc is None:
                codes.append(None)
                continue
            try:
                codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                codes.append(None)
            slot.proc = None
        return codes

    def kill_all(self) -> None:
        """SIGKILL every worker still running (cleanup after an error)."""
        for slot in self.slots:
            self.kill(slot)
