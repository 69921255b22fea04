"""Process helpers by pid: liveness, ownership by procfs, termination (redis-server, workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from redrive.errors import EmbeddedServerError


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone; another user's process as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # A zombie still has a pid but no longer serves anything; count it as gone.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def wait_gone(pid: int, timeout: float) -> bool:
    """Poll until ``pid`` is gone; False if it still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def quote(value: Path | str) -> str:
    """``value`` as a double-quoted redis.conf argument."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def last_line(path: Path) -> str:
    """The last line of a log file, for error messages (``no log`` / ``empty log``)."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "empty log"


def owned_pid(pid: int | None, data_dir: Path) -> int | None:
    """``pid`` if it is a live redis-server serving ``data_dir``, else None."""
    if pid is None or not pid_alive(pid):
        return None
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        return pid  # no procfs (macOS): the PING on our socket has the last word
    try:
        cmdline = (proc / "cmdline").read_bytes()
        # redis-server chdirs to its `dir`, so its cwd names the data dir it serves.
        cwd = (proc / "cwd").resolve(strict=True)
    except OSError:
        return None
    if b"redis-server" not in cmdline or cwd != data_dir.resolve():
        return None  # the pid was reused by another program
    return pid


def terminate(pid: int, timeout: float, *, first: signal.Signals | None = None) -> None:
    """Stop ``pid`` and wait until it is gone.

    ``first=None`` (after a SHUTDOWN was sent): wait for it to exit, then SIGTERM, then
    SIGKILL; ``first=SIGTERM``: SIGTERM, then SIGKILL after ``timeout``; ``first=SIGKILL``.
    """
    steps: tuple[tuple[signal.Signals | None, float], ...] = (
        (None, 0.6),
        (signal.SIGTERM, 0.4),
        (signal.SIGKILL, 0.0),
    )
    if first is not None:
        steps = ((first, 1.0), (signal.SIGKILL, 0.0)) if first != signal.SIGKILL else steps[2:]
    for sig, share in steps:
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if wait_gone(pid, max(timeout * share, 1.0)):
            return
    raise EmbeddedServerError(f"redis-server pid {pid} survived SIGKILL; check `ps {pid}`")


def fsync_policy_in(conf: Path) -> str | None:
    """The ``appendfsync`` a previous launch wrote into ``conf``, if any."""
    try:
        text = conf.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "appendfsync" and value.strip() in ("everysec", "always"):
            return value.strip()
    return None
