"""``redrive worker --processes N``: one command, N worker processes, one supervisor.

The supervisor starts N children, each a fresh interpreter running ``redrive worker`` with
the same app and options under the consumer names ``NAME-1`` … ``NAME-N``, passes their
output through with the child's name on every line, and keeps N running:

- **A child that exits** (kill -9, the OOM killer, a crash) is restarted under the same
  name, so it re-reads its own pending entries first. Its consumer-name lease
  (:mod:`redrive.runtime.liveness`) may still be held by the dead pid: the supervisor has
  reaped that pid, so it tells the replacement (``REDRIVE_REAPED_WORKER``), which takes the
  name over at once instead of being refused or waiting for the lease to expire.
- **Backoff, then give up.** An exit less than ``min_uptime`` (5 s) after a start is a
  *fast exit*. The first is restarted at once, the next after 0.5 s, then 1 s, 2 s …
  (at most 5 s); the ``max_fast_exits``-th (3rd) fast exit in a row of one child is a crash
  loop (the app raises at import, a bad option, a name held by a live worker): the
  supervisor stops every child and raises :class:`CrashLoop` naming the child, its exit
  code and its last line on stderr. A child that ran ``min_uptime`` or longer is restarted
  at once, whatever its exit code: the count starts again.
- **SIGTERM / SIGINT** is forwarded to every child, and each drains as a single worker
  does. A child still running ``stop_timeout`` seconds later is killed (SIGKILL) and
  reported, as is one that exits non-zero: :meth:`Supervisor.run` returns them.
- **No orphans.** Each child asks Linux to be sent SIGTERM when the supervisor dies
  (:func:`follow_supervisor`), so a kill -9 of the supervisor leaves no worker holding a
  name that a restarted supervisor would then be refused.

Example::

    names = [f"shop-{i}" for i in (1, 2)]
    argv = lambda name: [sys.executable, "-m", "redrive.cli", "worker", "shop:app",
                         "--consumer", name]
    unclean = Supervisor(names, argv, stop_timeout=40.0).run()   # until SIGTERM
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

from redrive.errors import ConfigError, RedriveError
from redrive.runtime.liveness import REAPED_ENV

log = logging.getLogger("redrive.supervisor")

#: Set in a child's environment: the pid of the supervisor it must not outlive.
SUPERVISOR_ENV = "REDRIVE_SUPERVISOR_PID"
#: How often the supervisor looks for exited children (a kill -9 is seen within this).
POLL = 0.02
#: How many of a child's last stderr lines are kept for the crash report.
TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1


class CrashLoop(RedriveError):
    """A child kept exiting right after its start: the supervisor stopped every child."""


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When a child that exited is restarted, and when the supervisor gives up.

    ``min_uptime``: an exit sooner than this after the start is a fast exit;
    ``max_fast_exits`` in a row is a crash loop. The restart after the k-th fast exit in a
    row waits ``backoff * 2 ** (k - 2)`` seconds (at most ``max_backoff``); after the
    first, or after a child that ran ``min_uptime`` or longer, none.
    """

    min_uptime: float = 5.0
    max_fast_exits: int = 3
    backoff: float = 0.5
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if self.max_fast_exits < 1:
            raise ConfigError(f"max_fast_exits={self.max_fast_exits}: must be at least 1")
        if min(self.min_uptime, self.backoff, self.max_backoff) < 0:
            raise ConfigError("min_uptime, backoff and max_backoff must be >= 0 seconds")

    def delay(self, fast_exits: int) -> float:
        """Seconds before the restart that follows the ``fast_exits``-th fast exit in a row."""
        if fast_exits <= 1:
            return 0.0
        return float(min(self.backoff * 2 ** (fast_exits - 2), self.max_backoff))


def tagged(name: str, raw: bytes) -> str:
    """One line of child ``name``'s output as the supervisor prints it.

    A JSON object (``--log-format json``) gains a ``"consumer"`` field and stays one JSON
    object per line; any other line gets a ``[name] `` prefix.
    """
    text = raw.decode(errors="replace").rstrip("\r\n")
    if text.startswith("{"):
        with contextlib.suppress(ValueError):
            record = json.loads(text)
            if isinstance(record, dict):
                return json.dumps({**record, "consumer": name})
    return f"[{name}] {text}"


def describe_exit(code: int) -> str:
    """``exit code 2`` or ``SIGKILL`` (a negative Popen return code)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
        return f"signal {-code}"
    return f"exit code {code}"


_WRITE = threading.Lock()


def _relay(name: str, pipe: IO[bytes], sink: str, tail: deque[str] | None) -> None:
    """Copy ``pipe`` line by line to ``sys.<sink>``, tagged; keep the last lines in ``tail``."""
    with pipe:
        for raw in iter(pipe.readline, b""):
            if tail is not None:
                tail.append(raw.decode(errors="replace").strip())
            with _WRITE, contextlib.suppress(OSError, ValueError):
                # Our own output gone (a closed terminal): keep reading, or the child blocks.
                stream = getattr(sys, sink)
                stream.write(tagged(name, raw) + "\n")
                stream.flush()


@dataclass(slots=True)
class Child:
    """One child slot: its name, its current process, and its record of fast exits."""

    name: str
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    fast_exits: int = 0
    restart_at: float | None = None
    reaped_pid: int | None = None
    killed: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    relays: list[threading.Thread] = field(default_factory=list)

    def last_line(self) -> str:
        """The last non-empty line it wrote on stderr (of a JSON record: its ``msg``)."""
        for line in reversed(self.tail):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        return str(record.get("msg", line))
            if line:
                return line
        return ""


class Supervisor:
    """Keeps one child per name running until SIGTERM/SIGINT; see the module docstring.

    ``argv(name)`` is the command of the child named ``name``; ``env`` is added to this
    process's environment for every child.
    """

    def __init__(
        self,
        names: Sequence[str],
        argv: Callable[[str], Sequence[str]],
        *,
        stop_timeout: float,
        policy: RestartPolicy | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not names:
            raise ConfigError("a supervisor needs at least one child")
        self.children = [Child(name) for name in names]
        self.argv = argv
        self.stop_timeout = stop_timeout
        self.policy = policy or RestartPolicy()
        self.env = dict(env or {})
        self._signals: list[int] = []
        self._stopping_since: float | None = None
        self._crash: str | None = None
        self.unclean: list[str] = []

    def run(self) -> list[str]:
        """Run until SIGTERM/SIGINT, then drain every child.

        Returns one line per child that did not stop cleanly (empty: all drained and
        exited 0). Raises :class:`CrashLoop` (after stopping the others) if one crash-loops.
        """
        handlers = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handlers}
        try:
            for child in self.children:
                self._start(child, time.monotonic())
            while not self._finished():
                time.sleep(POLL)
                self._step(time.monotonic())
        finally:
            self._kill_running()  # only after an error of our own: all have exited otherwise
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._crash is not None:
            raise CrashLoop(self._crash)
        return self.unclean

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)  # acted on by the loop: nothing else is safe here

    def _finished(self) -> bool:
        return self._stopping_since is not None and all(c.proc is None for c in self.children)

    def _step(self, now: float) -> None:
        while self._signals:
            self._stop(now, signal.Signals(self._signals.pop(0)))
        for child in self.children:
            code = child.proc.poll() if child.proc is not None else None
            if code is not None:
                self._exited(child, code, now)
            elif child.restart_at is not None and now >= child.restart_at:
                self._start(child, now)
        since = self._stopping_since
        if since is not None and now - since > self.stop_timeout:
            self._kill_stragglers()

    def _start(self, child: Child, now: float) -> None:
        env = {**os.environ, **self.env, SUPERVISOR_ENV: str(os.getpid())}
        env.pop(REAPED_ENV, None)  # only ever this child's own predecessor
        if child.reaped_pid is not None:
            env[REAPED_ENV] = f"{child.reaped_pid} {child.name}"
        proc = subprocess.Popen(
            list(self.argv(child.name)),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        child.proc, child.started, child.restart_at, child.killed = proc, now, None, False
        outputs = ((proc.stdout, "stdout", None), (proc.stderr, "stderr", child.tail))
        child.relays = [
            threading.Thread(
                target=_relay,
                args=(child.name, pipe, sink, tail),
                daemon=True,
                name=f"{child.name} {sink}",
            )
            for pipe, sink, tail in outputs
        ]
        for relay in child.relays:
            relay.start()
        log.info("started %s (pid %d)", child.name, proc.pid)

    def _exited(self, child: Child, code: int, now: float) -> None:
        assert child.proc is not None
        pid = child.reaped_pid = child.proc.pid
        child.proc = None
        for relay in child.relays:
            relay.join(1.0)  # its last lines, before they are reported
        if self._stopping_since is not None:
            if code != 0 and not child.killed:
                self.unclean.append(f"{child.name} (pid {pid}) exited with {describe_exit(code)}")
            return
        uptime = now - child.started
        child.fast_exits = child.fast_exits + 1 if uptime < self.policy.min_uptime else 0
        if child.fast_exits >= self.policy.max_fast_exits:
            self._crash = self._crash_line(child, code)
            log.error("%s", self._crash)
            self._stop(now, signal.SIGTERM)
            return
        delay = self.policy.delay(child.fast_exits)
        child.restart_at = now + delay
        log.warning(
            "%s (pid %d) exited with %s after %.1f s: restarting it %s",
            child.name, pid, describe_exit(code), uptime,
            "now" if delay == 0 else f"in {delay:g} s",
        )  # fmt: skip

    def _crash_line(self, child: Child, code: int) -> str:
        last = child.last_line()
        return (
            f"child {child.name} exited {child.fast_exits} times in a row within "
            f"{self.policy.min_uptime:g} s of its start (a crash loop), the last time with "
            f"{describe_exit(code)}{': ' + last if last else ''}; not restarted, every "
            "child stopped"
        )

    def _stop(self, now: float, sig: signal.Signals) -> None:
        """Forward ``sig`` to every running child (again on a second signal)."""
        if self._stopping_since is None:
            self._stopping_since = now
            running = sum(c.proc is not None for c in self.children)
            log.info(
                "%s: stopping %d children (each drains; killed after %g s)",
                sig.name, running, self.stop_timeout,
            )  # fmt: skip
        for child in self.children:
            child.restart_at = None
            if child.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(sig)

    def _kill_stragglers(self) -> None:
        for child in self.children:
            proc = child.proc
            if proc is not None and not child.killed:
                child.killed = True
                proc.kill()
                self.unclean.append(
                    f"{child.name} (pid {proc.pid}) did not stop within "
                    f"{self.stop_timeout:g} s of the signal: killed"
                )

    def _kill_running(self) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()


def follow_supervisor() -> None:
    """In a supervisor's child: be sent SIGTERM when the supervisor dies (Linux).

    Without it a kill -9 of the supervisor would leave its children running under their
    names, and a restarted supervisor would be refused those names. A no-op in a worker
    that no supervisor started (``REDRIVE_SUPERVISOR_PID`` unset) and outside Linux.
    """
    expected = os.environ.pop(SUPERVISOR_ENV, None)
    if not expected or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != expected:  # it died before the prctl took effect
        raise ConfigError(f"the supervisor (pid {expected}) is gone: this child does not start")
