"""Redis Cluster: URL schemes, detection, client factories and slot-owner connections.

A URL names a cluster either explicitly (``redis+cluster://host:port``, ``rediss+cluster://``
for TLS) or implicitly: a plain ``redis://`` URL whose server reports ``cluster_enabled:1``
in ``INFO cluster`` is treated as a cluster too (probed once per URL and process).

A cluster URL may name several seed nodes, separated by commas:
``redis+cluster://user:pw@h1:7000,h2:7001,[::1]:7002/0?…`` (one user-info, one path and
query for all). The client asks them in turn for the slot map, so it starts while one
answers; each seed without a port gets 6379.

The cluster clients are redis-py's ``RedisCluster`` (asyncio and blocking). They speak the
same command API as ``Redis``, so the runtime and the tools use them unchanged; the few
places that reach below that API (the reader's raw :class:`~redrive.store.channel.Channel`,
script loading) ask :func:`is_cluster`.

Every key one Lua script touches shares the source stream's hash tag (docs/concepts.md#keys), so
every script runs on one node. Global keys (``redrive:streams``, ``redrive:audit``,
``redrive:health:state``) are single keys: they live on one master and are read with
ordinary single-key commands, so no tool has to fan out to find them.

Example::

    client = async_client("redis+cluster://10.0.0.5:7000")   # any node; the rest is found
    client = async_client("redis+cluster://10.0.0.5:7000,10.0.0.6:7000")  # either of two
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.retry
from redis import exceptions as rex
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.crc import key_slot

#: Cluster URL scheme -> the scheme redis-py understands.
SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

AsyncCluster = redis.asyncio.cluster.RedisCluster
SyncCluster = redis.cluster.RedisCluster

# URL (as given) -> whether its server runs in cluster mode; filled by probe().
_DETECTED: dict[str, bool] = {}

#: Replies that say "this node does not serve the slot (now)": the command did not run
#: there; refresh the slot map and try again on the owner.
REDIRECTS = (rex.MovedError, rex.AskError, rex.ClusterDownError, rex.TryAgainError)

#: Errors of a cluster in transition (a failover, a resharding): the command did not
#: run; the same command may be sent again once the slot map is refreshed.
CLUSTER_TRANSIENT = (rex.ClusterDownError, rex.TryAgainError, rex.SlotNotCoveredError)


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case (``""`` if it has none)."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""


def plain_url(url: str) -> str:
    """``url`` with a cluster scheme replaced by the one redis-py parses."""
    scheme = scheme_of(url)
    if scheme in SCHEMES:
        return SCHEMES[scheme] + url[len(scheme) :]
    return url


def split_seeds(url: str) -> tuple[str, list[str]]:
    """``url`` with only its first seed node, and every seed as ``host:port``.

    ``redis+cluster://:pw@h1:7000,h2:7001/0`` gives ``("redis+cluster://:pw@h1:7000/0",
    ["h1:7000", "h2:7001"])``; a URL with one node is returned unchanged. Raises
    ``ValueError`` for an empty seed or a bad port.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, []
    # The user-info ends at the last "@" (a password may hold any character).
    userinfo, at, location = rest.rpartition("@")
    cut = min((i for i in (location.find("/"), location.find("?")) if i != -1), default=-1)
    hosts, tail = (location, "") if cut == -1 else (location[:cut], location[cut:])
    seeds = []
    for seed in hosts.split(","):
        parts = urlsplit(f"redis://{seed}")
        if not seed or not parts.hostname:
            raise ValueError(f"empty seed node in {hosts!r}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        seeds.append(f"{host}:{parts.port or 6379}")
    first = hosts.split(",", 1)[0]
    return f"{scheme}://{userinfo}{at}{first}{tail}", seeds


def _startup_nodes(url: str, node_class: Any) -> tuple[str, dict[str, Any]]:
    """The URL redis-py parses (its first seed) and ``startup_nodes`` for the others."""
    first, seeds = split_seeds(url)
    if len(seeds) < 2:
        return url, {}
    nodes = []
    for seed in seeds[1:]:
        host, _, port = seed.rpartition(":")
        nodes.append(node_class(host.strip("[]"), int(port)))
    return first, {"startup_nodes": nodes}


def same_slot(*names: str) -> bool:
    """Whether every key of ``names`` hashes to one Redis Cluster slot."""
    return len({key_slot(name.encode()) for name in names}) <= 1


def is_cluster(client: object) -> bool:
    """True for redis-py cluster clients (asyncio or blocking)."""
    return isinstance(client, AsyncCluster | SyncCluster)


def wanted(url: str, options: dict[str, Any]) -> bool:
    """Whether ``url`` names a cluster: by scheme, else by asking the server once."""
    scheme = scheme_of(url)
    if scheme in SCHEMES:
        return True
    if scheme not in ("redis", "rediss"):
        return False  # unix sockets: redis-py's cluster client speaks TCP only
    if url not in _DETECTED:
        found = probe(url, options)
        if found is None:
            return False  # unreachable now: the caller's own PING reports why
        _DETECTED[url] = found
    return _DETECTED[url]


def detected(url: str) -> bool:
    """Whether ``url`` (a plain ``redis://`` one) was found to be a cluster node."""
    return _DETECTED.get(url, False)


def probe(url: str, options: dict[str, Any]) -> bool | None:
    """``INFO cluster`` over a short-lived connection: True, False, or None if unknown.

    A user whose ACL denies INFO gets False (standalone): such a user names a cluster
    with ``redis+cluster://`` instead.
    """
    timeout = min(2.0, float(options.get("socket_connect_timeout") or 2.0))
    settings = {**options, "socket_timeout": timeout, "socket_connect_timeout": timeout}
    settings["retry"] = redis.retry.Retry(NoBackoff(), 0)  # the caller's may be asyncio's
    client = redis.Redis.from_url(url, **settings)
    try:
        info = client.info("cluster")
    except rex.NoPermissionError:
        return False
    except (rex.RedisError, OSError):
        return None
    finally:
        client.close()
    return str(info.get("cluster_enabled", 0)) == "1"


def _cluster_options(options: dict[str, Any]) -> dict[str, Any]:
    # health_check_interval is a per-connection option the cluster constructor rejects;
    # cluster nodes re-check liveness themselves when a command fails.
    return {k: v for k, v in options.items() if k != "health_check_interval"}


def async_client(url: str, options: dict[str, Any]) -> AsyncCluster:
    """An asyncio ``RedisCluster`` with redrive's options and no blind retries.

    The cluster-level ``retry`` is zero: a connection error or timeout surfaces to the
    runtime (which knows what is safe to repeat) and marks the slot map for a refresh.
    MOVED and ASK are still followed: the refused command did not run on that node.
    """
    settings = _cluster_options(options)
    settings["retry"] = redis.asyncio.retry.Retry(NoBackoff(), 0)
    first, seeds = _startup_nodes(url, redis.asyncio.cluster.ClusterNode)
    return AsyncCluster.from_url(plain_url(first), **settings, **seeds)


def sync_client(url: str, options: dict[str, Any]) -> SyncCluster:
    """A blocking ``RedisCluster`` with the same settings as :func:`async_client`."""
    settings = _cluster_options(options)
    settings["retry"] = redis.retry.Retry(NoBackoff(), 0)
    first, seeds = _startup_nodes(url, redis.cluster.ClusterNode)
    return SyncCluster.from_url(plain_url(first), **settings, **seeds)


class SlotOwner:
    """Connections to the master that owns one key's slot, re-resolved after a failure.

    ``acquire`` follows the client's slot map; ``forget`` (after a transport error) makes
    the next ``acquire`` refresh that map first, because the owner may have died and a
    replica been promoted; ``redirected`` applies a MOVED reply to the map directly.
    """

    def __init__(self, client: AsyncCluster, key: str) -> None:
        self.client = client
        self.key = key
        self.node: redis.asyncio.cluster.ClusterNode | None = None
        self.stale = False

    async def acquire(self) -> AbstractConnection:
        """A connection (not yet connected) to the current owner of ``key``'s slot."""
        await self.client.initialize()  # no-op once the slot map is loaded
        if self.stale:
            # Ask the node that failed last (it may be the hung one).
            failed = self.node.name if self.node is not None else None
            await self.client.nodes_manager.initialize(last_failed_node_name=failed)
            self.stale = False
        node = self.client.get_node_from_key(self.key)
        if node is None:
            raise rex.SlotNotCoveredError(f"no node serves the slot of {self.key!r}")
        self.node = node
        return node.acquire_connection()

    def release(self, conn: AbstractConnection) -> None:
        """Hand ``conn`` back to the node it came from."""
        if self.node is not None:
            self.node.release(conn)  # type: ignore[arg-type]

    def forget(self) -> None:
        """After a transport error: refresh the slot map before the next acquire."""
        self.stale = True

    async def redirected(self, error: rex.ResponseError) -> None:
        """Apply a MOVED reply to the slot map (others just refresh it)."""
        if isinstance(error, rex.MovedError):
            await self.client.nodes_manager.move_slot(error)
        else:
            self.stale = True
