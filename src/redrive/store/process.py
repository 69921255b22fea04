"""Process helpers of the embedded server: liveness, ownership by procfs, termination."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from redrive.errors import EmbeddedServerError


def pid_alive(pid: int) -> bool:
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
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def quote(value: Path | str) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def last_line(path: Path) -> str:
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


def terminate(pid: int, timeout: float) -> None:
    """Wait for ``pid`` to exit, then SIGTERM, then SIGKILL it."""
    for sig, share in ((None, 0.6), (signal.SIGTERM, 0.4), (signal.SIGKILL, 0.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if wait_gone(pid, max(timeout * share, 1.0)):
            return
    raise EmbeddedServerError(f"redis-server pid {pid} survived SIGKILL; check `ps {pid}`")


def server_config(data_dir: Path, *, socket: Path, pid: Path, log: Path, appendfsync: str) -> str:
    """The ``redis.conf`` of an embedded server: unix socket only, AOF, no RDB."""
    lines = [
        "daemonize yes",
        "port 0",  # no TCP at all: only local processes that can open the socket
        f"unixsocket {quote(socket)}",
        "unixsocketperm 700",
        f"dir {quote(data_dir)}",
        f"pidfile {quote(pid)}",
        f"logfile {quote(log)}",
        'save ""',  # the AOF is the durable copy; RDB snapshots would only add forks
        "appendonly yes",
        f"appendfsync {appendfsync}",
    ]
    return "\n".join(lines) + "\n"


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
