"""``redrive worker --processes N``: one command, N worker processes, one supervisor.

The supervisor starts N children, each a fresh interpreter running ``redrive worker`` with
the same app and options under the consumer names ``NAME-1`` … ``NAME-N``, passes their
output through with the child's name on every line, and keeps N running. It also keeps
one *standby* child that has imported the app and waits for a name: a replacement that
has already paid its start-up (a fresh interpreter takes 0.2 to 0.3 s on an idle machine and
over 1 s on a busy one), so a dead child is replaced in milliseconds.

- **A child that exits** (kill -9, the OOM killer, a crash) is restarted under the same
  name, so it re-reads its own pending entries first. Its consumer-name lease
  (:mod:`redrive.runtime.liveness`) may still be held by the dead pid: the supervisor has
  reaped that pid, so it tells the replacement (``reaped`` in its assignment,
  :mod:`redrive.process.supervised`), which takes the name over at once instead of being
  refused or waiting for the lease to expire.
- **Backoff, then give up.** An exit less than ``min_uptime`` (5 s) after a start is a
  *fast exit*. The first is restarted at once, the next after 0.5 s, then 1 s, 2 s …
  (at most 5 s); the ``max_fast_exits``-th (3rd) fast exit in a row of one child is a crash
  loop (the app raises at import, a bad option, a name held by a live worker): the
  supervisor stops every child and raises :class:`CrashLoop` naming the child, its exit
  code and its last line on stderr. A child that ran ``min_uptime`` or longer is restarted
  at once, whatever its exit code: the count starts again. The standby is restarted with
  the same backoff (under the name ``standby``) but never stops the supervisor: an app
  that cannot start stops the named children first, with the clearer line.
- **SIGTERM / SIGINT** is forwarded to every child, and each drains as a single worker
  does. A child still running ``stop_timeout`` seconds later is killed (SIGKILL) and
  reported, as is one that exits non-zero: :meth:`Supervisor.run` returns them.
- **No orphans.** Each child asks Linux to be sent SIGTERM when the supervisor dies
  (:func:`redrive.process.supervised.follow_supervisor`), so a kill -9 of the supervisor
  leaves no worker holding a name that a restarted supervisor would then be refused.

Example::

    argv = [sys.executable, "-m", "redrive.cli", "worker", "shop:app", "--supervised"]
    unclean = Supervisor(["shop-1", "shop-2"], argv, stop_timeout=40.0).run()  # to SIGTERM
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from redrive.errors import ConfigError, RedriveError
from redrive.process.spawned import Spawned, describe_exit
from redrive.process.supervised import SUPERVISOR_ENV
from redrive.runtime.liveness import REAPED_ENV

log = logging.getLogger("redrive.supervisor")

#: How often the supervisor looks for exited children (a kill -9 is seen within this).
POLL = 0.02
STANDBY = "standby"


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


@dataclass(slots=True)
class Slot:
    """One name the supervisor keeps running (or the standby), and its fast exits."""

    name: str
    child: Spawned | None = None
    fast_exits: int = 0
    restart_at: float | None = None
    reaped_pid: int | None = None


class Supervisor:
    """Keeps one child per name running until SIGTERM/SIGINT; see the module docstring.

    ``argv`` is the command of every child (each learns its name on stdin);
    ``assignment(name)`` adds fields to the line that names it (``metrics_port``); ``env``
    is added to this process's environment for every child.
    """

    def __init__(
        self,
        names: Sequence[str],
        argv: Sequence[str],
        *,
        stop_timeout: float,
        policy: RestartPolicy | None = None,
        env: Mapping[str, str] | None = None,
        assignment: Callable[[str], Mapping[str, object]] | None = None,
    ) -> None:
        if not names:
            raise ConfigError("a supervisor needs at least one child")
        self.slots = [Slot(name) for name in names]
        self.standby = Slot(STANDBY)
        self.argv = list(argv)
        self.stop_timeout = stop_timeout
        self.policy = policy or RestartPolicy()
        self.env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != REAPED_ENV}
        self.env[SUPERVISOR_ENV] = str(os.getpid())
        self.assignment = assignment or (lambda name: {})
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
            for slot in self.slots:
                self._fill(slot, time.monotonic())
            self._spawn_standby(time.monotonic())
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

    def _all(self) -> list[Slot]:
        return [*self.slots, self.standby]

    def _finished(self) -> bool:
        return self._stopping_since is not None and all(s.child is None for s in self._all())

    def _step(self, now: float) -> None:
        while self._signals:
            sig = signal.Signals(self._signals.pop(0))
            self._stop(now, sig, why=sig.name)
        for slot in self._all():
            code = slot.child.popen.poll() if slot.child is not None else None
            if code is not None:
                self._exited(slot, code, now)
            elif slot.restart_at is not None and now >= slot.restart_at:
                self._restart(slot, now)
        since = self._stopping_since
        if since is not None and now - since > self.stop_timeout:
            self._kill_stragglers()

    def _spawn_standby(self, now: float) -> None:
        self.standby.restart_at = None
        self.standby.child = Spawned(self.argv, self.env, tag=STANDBY, now=now)
        log.debug("started a standby (pid %d)", self.standby.child.pid)

    def _fill(self, slot: Slot, now: float) -> None:
        """Run ``slot``'s name in the standby if there is one (then start the next
        standby), else in a new child."""
        slot.restart_at = None
        standby = self.standby.child
        if standby is not None and standby.popen.poll() is None:
            self.standby.child = None
        else:
            standby = None  # none, or it has just died: reaped by the next step
        child = standby or Spawned(self.argv, self.env, tag=slot.name, now=now)
        child.assign(slot.name, now, {"reaped": slot.reaped_pid, **self.assignment(slot.name)})
        slot.child = child
        how = "the standby" if standby is not None else "a new child"
        log.info("%s runs in %s (pid %d)", slot.name, how, child.pid)
        if standby is not None and self.standby.restart_at is None:
            self._spawn_standby(now)

    def _exited(self, slot: Slot, code: int, now: float) -> None:
        child = slot.child
        assert child is not None
        slot.child, slot.reaped_pid = None, child.pid
        child.finish()  # its last lines, before they are reported
        if self._stopping_since is not None:
            if code != 0 and not child.killed and child.assigned:
                self.unclean.append(
                    f"{slot.name} (pid {child.pid}) exited with {describe_exit(code)}"
                )
            return
        uptime = now - child.started
        slot.fast_exits = slot.fast_exits + 1 if uptime < self.policy.min_uptime else 0
        # The standby never stops the supervisor: its backoff bounds its restarts, and an app
        # that cannot start stops the named children first (the clearer line).
        if slot.fast_exits >= self.policy.max_fast_exits and slot is not self.standby:
            self._crash = self._crash_line(slot, child, code)  # the one line: raised by run()
            self._stop(now, signal.SIGTERM, why=f"{slot.name} crash-looping")
            return
        delay = self.policy.delay(slot.fast_exits)
        slot.restart_at = now + delay
        log.warning(
            "%s (pid %d) exited with %s after %.1f s: restarting it %s",
            slot.name, child.pid, describe_exit(code), uptime,
            "now" if delay == 0 else f"in {delay:g} s",
        )  # fmt: skip
        if delay == 0:
            self._restart(slot, now)

    def _restart(self, slot: Slot, now: float) -> None:
        if slot is self.standby:
            self._spawn_standby(now)
        else:
            self._fill(slot, now)

    def _crash_line(self, slot: Slot, child: Spawned, code: int) -> str:
        last = child.last_line()
        return (
            f"child {slot.name} exited {slot.fast_exits} times in a row within "
            f"{self.policy.min_uptime:g} s of its start (a crash loop), the last time with "
            f"{describe_exit(code)}{': ' + last if last else ''}; not restarted, every "
            "child stopped"
        )

    def _stop(self, now: float, sig: signal.Signals, *, why: str) -> None:
        """Send ``sig`` to every running child (again on a second signal)."""
        if self._stopping_since is None:
            self._stopping_since = now
            running = sum(s.child is not None for s in self.slots)
            log.info(
                "%s: stopping %d %s (each drains; killed after %g s)",
                why, running, "child" if running == 1 else "children", self.stop_timeout,
            )  # fmt: skip
        for slot in self._all():
            slot.restart_at = None
            if slot.child is not None:
                if not slot.child.assigned:
                    slot.child.release()  # a standby: end of input, it exits 0
                slot.child.send(sig)

    def _kill_stragglers(self) -> None:
        for slot in self._all():
            child = slot.child
            if child is not None and not child.killed:
                child.killed = True
                child.send(signal.SIGKILL)
                if child.assigned:
                    self.unclean.append(
                        f"{slot.name} (pid {child.pid}) did not stop within "
                        f"{self.stop_timeout:g} s of the signal: killed"
                    )

    def _kill_running(self) -> None:
        for slot in self._all():
            if slot.child is not None and slot.child.popen.poll() is None:
                slot.child.send(signal.SIGKILL)
                slot.child.popen.wait()
