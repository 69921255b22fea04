"""A private ``redis-server`` on a free port of 127.0.0.1, in a temp directory of its own.

The simulator runs its scenarios on one; tests, benchmarks and chaos runs too (it is part
of the testing surface as :class:`redrive.testing.RedisProcess`). It never uses port 6379
(the machine's shared Redis) and never flushes anything: users isolate themselves with
key prefixes instead.

Example::

    with RedisProcess(appendonly=True, appendfsync="always") as proc:
        client = redis.Redis.from_url(proc.url)
        ...
        proc.kill()        # crash: SIGKILL, no AOF flush beyond the policy
        proc.restart()     # same port, same dir: the AOF is replayed
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from redrive.errors import ConfigError, EmbeddedServerError
from redrive.store.binary import find_redis_server
from redrive.store.process import last_line
from redrive.store.server import SHARED_PORT, RedisServer, ServerConfig, free_port


class RedisProcess:
    """A private ``redis-server`` child process (tests, benchmarks, the simulator).

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
        self._server: RedisServer | None = None
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
        return self._server.pid if self._server is not None else None

    @property
    def running(self) -> bool:
        """True while the child process has not exited."""
        return self._server is not None and self._server.running

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
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout)

    def kill(self) -> None:
        """SIGKILL, as in a crash: only what the fsync policy already wrote survives."""
        server, self._server = self._server, None
        if server is not None:
            server.kill()

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

    def _config(self) -> ServerConfig:
        return ServerConfig(
            self._dir(),
            port=self._port() if self.tcp else 0,
            unix_socket=self.socket_path if self.unix_socket else None,
            appendonly=self.appendonly,
            appendfsync=self.appendfsync,
            extra=tuple(self.extra_config),
        )

    def _spawn(self) -> bool:
        server = RedisServer(self._config(), binary=self.binary, start_timeout=self.start_timeout)
        try:
            server.start()  # a child that never answers is killed by pid before this raises
        except EmbeddedServerError:
            return False
        self._server = server
        version = str(server.info().get("redis_version", "0"))
        self._version = tuple(int(part) for part in version.split("."))
        return True

    def _log_tail(self) -> str:
        return last_line(self._dir() / "redis.log")
