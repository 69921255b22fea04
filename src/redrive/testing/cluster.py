"""Public testing helper: a private Redis Cluster of ``redis-server`` child processes.

:class:`RedisClusterProcess` starts ``masters`` nodes (and ``replicas`` per master) from
one binary on free ports of 127.0.0.1, joins them with CLUSTER MEET, splits the 16384
slots evenly, attaches replicas with CLUSTER REPLICATE and waits until every node agrees
(``cluster_state:ok`` and one slot map everywhere). Nodes are stopped by pid.

Example::

    with RedisClusterProcess(masters=3, replicas=1) as cluster:
        client = redis.cluster.RedisCluster.from_url(cluster.plain_url)
        owner = cluster.master_of("{ecommerce:orders}")
        owner.kill()                                   # the replica takes over
        cluster.wait_healthy()
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis import exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from redrive.errors import ConfigError, EmbeddedServerError
from redrive.store.local import RedisProcess
from redrive.store.server import free_port

SLOTS = 16384


class RedisClusterProcess:
    """A local Redis Cluster for tests and benchmarks (never on port 6379)."""

    def __init__(
        self,
        binary: Path | None = None,
        *,
        masters: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 1000,
        extra_config: Sequence[str] = (),
        ready_timeout: float = 30.0,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ConfigError("a cluster needs masters >= 1 and replicas >= 0")
        config = [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {node_timeout_ms}",
            # Fail over whatever the replica's lag: tests kill masters on purpose.
            "cluster-replica-validity-factor 0",
            *extra_config,
        ]
        count = masters * (1 + replicas)
        self.nodes = [RedisProcess(binary, extra_config=config) for _ in range(count)]
        self.masters_wanted = masters
        self.ready_timeout = ready_timeout

    # -- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<port>`` of the first live node."""
        return "redis+cluster" + self.plain_url[len("redis") :]

    @property
    def plain_url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` of the first live node (for redis-py directly)."""
        live = [node for node in self.nodes if node.running]
        if not live:
            raise EmbeddedServerError("no node of the cluster is running")
        return live[0].url

    def master_of(self, key: str) -> RedisProcess:
        """The node that serves ``key``'s slot now (asks a live node)."""
        node = self.nodes_running()[0]
        slot = int(self._ask(node, "CLUSTER KEYSLOT", key))
        for start, end, master, *_ in self._ask(node, "CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                port = int(master[1])
                return next(node for node in self.nodes if node.port == port)
        raise EmbeddedServerError(f"no master serves {key!r}")

    def reshard(self, key: str, to: RedisProcess, *, pause: float = 0.0) -> int:
        """Move the slot of ``key`` to the master ``to`` as ``redis-cli --cluster reshard``
        does, one key at a time: IMPORTING on ``to``, MIGRATING on the owner, MIGRATE
        each key (``pause`` seconds after each: a long migration), then SETSLOT NODE on
        every master. Returns how many keys moved."""
        source = self.master_of(key)
        if to.port is None:
            raise EmbeddedServerError("the target node is not running")
        slot = int(self._ask(source, "CLUSTER KEYSLOT", key))
        source_id, target_id = self._ask(source, "CLUSTER MYID"), self._ask(to, "CLUSTER MYID")
        self._ask(to, "CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        self._ask(source, "CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        while keys := self._ask(source, "CLUSTER GETKEYSINSLOT", slot, 10):
            for name in keys:
                self._ask(source, "MIGRATE", "127.0.0.1", to.port, name, 0, 5000)
                moved += 1
                time.sleep(pause)
        for node in self.nodes_running():
            with contextlib.suppress(rex.ResponseError):  # a replica refuses SETSLOT
                self._ask(node, "CLUSTER SETSLOT", slot, "NODE", target_id)
        return moved

    def nodes_running(self) -> list[RedisProcess]:
        """The nodes whose process is alive."""
        return [node for node in self.nodes if node.running]

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> RedisClusterProcess:
        """Start every node, form the cluster and wait until it is healthy."""
        for node in self.nodes:
            _start_node(node)
        for node in self.nodes[1:]:
            self._ask(self.nodes[0], "CLUSTER MEET", "127.0.0.1", str(node.port))
        self._assign_slots()
        self._wait(self._all_known, "every node to know every other")
        self._attach_replicas()
        self.wait_healthy()
        return self

    def wait_healthy(self) -> None:
        """Wait until every live node reports ``cluster_state:ok`` and one slot map in
        which every slot is served by a live master (so, after a kill, a promotion)."""
        self._wait(self._agreed, "cluster_state:ok and one slot map on every node")

    def close(self) -> None:
        """Stop every node by pid and remove their directories."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterProcess:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _client(self, node: RedisProcess) -> redis.Redis:
        client = redis.Redis.from_url(
            node.url, socket_timeout=5, protocol=2, retry=Retry(NoBackoff(), 0)
        )
        # Raw replies: the CLUSTER replies are read here as Redis sends them.
        client.response_callbacks.clear()
        return client

    def _assign_slots(self) -> None:
        share = SLOTS // self.masters_wanted
        for i, node in enumerate(self.nodes[: self.masters_wanted]):
            end = SLOTS - 1 if i == self.masters_wanted - 1 else (i + 1) * share - 1
            # ADDSLOTS with every slot, not ADDSLOTSRANGE: that one needs Redis 7.
            self._ask(node, "CLUSTER ADDSLOTS", *range(i * share, end + 1))

    def _attach_replicas(self) -> None:
        masters = self.nodes[: self.masters_wanted]
        for i, node in enumerate(self.nodes[self.masters_wanted :]):
            master_id = self._ask(masters[i % len(masters)], "CLUSTER MYID")
            self._ask(node, "CLUSTER REPLICATE", master_id)

    def _all_known(self) -> bool:
        want = len(self.nodes)
        for node in self.nodes:
            lines = str(self._ask(node, "CLUSTER NODES")).splitlines()
            if len(lines) != want or any("handshake" in line for line in lines):
                return False
        return True

    def _agreed(self) -> bool:
        live = self.nodes_running()
        ports = {node.port for node in live}
        views = set()
        for node in live:
            if "cluster_state:ok" not in str(self._ask(node, "CLUSTER INFO")):
                return False
            slots = self._ask(node, "CLUSTER SLOTS")
            # Every slot served by a live master (after a kill: the promoted replica).
            if any(int(s[2][1]) not in ports for s in slots):
                return False
            views.add(repr(sorted((int(s[0]), int(s[2][1]), len(s)) for s in slots)))
        return len(views) == 1

    def _ask(self, node: RedisProcess, *command: str | int) -> Any:
        client = self._client(node)
        try:
            reply = client.execute_command(*command)  # type: ignore[no-untyped-call]
            return reply.decode() if isinstance(reply, bytes) else reply
        finally:
            client.close()

    def _wait(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (rex.RedisError, OSError):
                pass  # a node still loading or just promoted: ask again
            time.sleep(0.05)
        raise EmbeddedServerError(f"timed out after {self.ready_timeout}s waiting for {what}")


#: Redis refuses a cluster port above this: its bus port (port + 10000) must fit in 16 bits.
MAX_CLUSTER_PORT = 55535


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too.

    The kernel's ephemeral range reaches 60999, so a plain free port is too high for a
    cluster node about one time in five: the node would refuse to start.
    """
    for _ in range(200):
        port = free_port()
        if port <= MAX_CLUSTER_PORT and _free(port + 10000):
            return port
    raise EmbeddedServerError("no free port pair (port, port + 10000) below 55536")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_node(node: RedisProcess, attempts: int = 5) -> None:
    """Start ``node`` on a cluster-safe port, trying again if another process took it."""
    for attempt in range(attempts):
        node.port = cluster_port()
        try:
            node.start()
            return
        except EmbeddedServerError:
            if attempt == attempts - 1:
                raise
