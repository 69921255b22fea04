"""Redis connections: URL checks, secret-free URLs for messages, client factories.

Every client redrive opens goes through :func:`async_client` or :func:`sync_client`, so
timeouts, keep-alives and the wire protocol are the same everywhere. Every error that
names a URL names it through :func:`redact_url`, so a password never reaches a log line.

Example::

    url = validate_url("redis://:s3cret@cache.internal:6379/0")
    client = async_client(url)
    await ping(client, url)      # StoreError("cannot connect to redis://:***@…: …")
"""

from __future__ import annotations

import re
import ssl
from typing import Any, cast
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis import exceptions as rex
from redis.backoff import NoBackoff

from redrive.errors import ConfigError, StoreError
from redrive.store import cluster
from redrive.store.cluster import scheme_of

try:
    from redis.driver_info import DriverInfo
except ImportError:  # an older redis-py: it has no DriverInfo to share
    _DRIVER: dict[str, Any] = {}
else:
    # One DriverInfo for every connection: left to redis-py, each new connection reads
    # the package metadata again for CLIENT SETINFO (about 3 ms apiece at start-up).
    _DRIVER = {"driver_info": DriverInfo(lib_version=redis.__version__)}

SCHEMES = ("redis", "rediss", "unix", *cluster.SCHEMES)
MASK = "***"
EMBEDDED_HINT = (
    "point at it with --redis-url or REDRIVE_REDIS_URL (embedded: `redrive server status`)"
)

# Query parameters that may carry a secret (redis-py reads `password` from the query).
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|auth|credential", re.IGNORECASE)
_LOOSE_PARAM = re.compile(r"(?i)((?:pass\w*|pwd|secret|token|auth\w*|credential\w*)=)[^&#\s]*")
_URL_SHAPES = (
    "redis://host:6379/0, rediss://host:6380/0, redis+cluster://host:7000[,host2:7001…] "
    "or unix:///path/to/redis.sock"
)


def redact_url(url: str) -> str:
    """``url`` with every password replaced by ``***``; never raises.

    ``redis://user:pw@host:6379/0`` becomes ``redis://user:***@host:6379/0``; a lone
    user-info (``redis://pw@host``) is masked whole because many people put the password
    there; ``unix:///run/redis.sock?password=pw`` becomes ``…?password=***``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    # Split the user-info at the *last* "@" by hand: an unencoded "#", "?" or "/" in a
    # password would make urlsplit cut the netloc short and leak the rest of it.
    userinfo, at, location = rest.rpartition("@")
    shown = f"{scheme}://" if sep else ""
    if at:
        user, colon, _ = userinfo.partition(":")
        plain_user = colon and not any(ch in user for ch in "/?#")
        shown += f"{user}:{MASK}@" if plain_user else f"{MASK}@"
    return shown + _redact_query(location)


def _redact_query(location: str) -> str:
    head, question, tail = location.partition("?")
    if not question:
        return location
    query, hash_, fragment = tail.partition("#")
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        return _LOOSE_PARAM.sub(r"\1" + MASK, location)
    masked = [(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs]
    return f"{head}?{urlencode(masked, safe='*/:', quote_via=quote)}{hash_}{fragment}"


def validate_url(url: str) -> str:
    """Return ``url`` unchanged if redis-py can use it, else raise :class:`ConfigError`.

    Checked before any I/O so a typo fails with a message that says what to write::

        validate_url("localhost:6379")   # ConfigError: … expected redis://host:6379/0, …
    """
    shown = redact_url(url)
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigError(f"invalid Redis URL {shown!r}: expected {_URL_SHAPES}")
    if scheme.lower() not in SCHEMES:
        raise ConfigError(
            f"unsupported Redis URL scheme {scheme!r} in {shown!r}: use {_URL_SHAPES}"
        )
    try:
        parts = _split_checked(url)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {shown!r}: {exc}; expected {_URL_SHAPES}") from exc
    if parts.scheme.lower() == "unix" and not parts.path:
        raise ConfigError(f"Redis URL {shown!r} has no socket path: use unix:///path/to/redis.sock")
    if parts.scheme.lower() in cluster.SCHEMES and parts.path.strip("/") not in ("", "0"):
        raise ConfigError(f"Redis URL {shown!r}: a Redis Cluster has only database 0")
    return url


def _split_checked(url: str) -> SplitResult:
    """``urlsplit`` of ``url`` (of its first seed, for a cluster), every port checked."""
    if scheme_of(url) in cluster.SCHEMES:
        first, seeds = cluster.split_seeds(url)
        for seed in seeds[1:]:
            _ = urlsplit(f"redis://{seed}").port
    else:
        first = url
        location = url.partition("://")[2].rpartition("@")[2]
        if "," in location.split("/", 1)[0].split("?", 1)[0]:
            raise ValueError("several nodes are for a Redis Cluster: use redis+cluster://")
    parts = urlsplit(first)
    _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    return parts


def _client_options(
    url: str, socket_timeout: float | None, retry: object, kw: dict[str, Any]
) -> dict[str, Any]:
    options: dict[str, Any] = {
        # No silent retries (redis-py 6+ retries 3 times by default): re-sending XADD,
        # XREADGROUP or a move script after a lost reply duplicates or misreports work;
        # the runtime decides what is safe to repeat after a reconnect.
        "retry": retry,
        "decode_responses": False,
        "health_check_interval": 30,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 10.0,
        # RESP2 pinned: reply shapes (XAUTOCLAIM, XINFO, script results) then do not depend
        # on the redis-py version (8.x speaks RESP3 by default, 5.x RESP2).
        "protocol": 2,
        **_DRIVER,
    }
    if not url.lower().startswith("unix:"):
        # Keep-alive is a TCP option; unix socket connections reject the argument.
        options["socket_keepalive"] = True
    options.update(kw)
    return options


def async_client(
    url: str,
    *,
    socket_timeout: float | None = 30.0,
    pool_size: int | None = None,
    node_timeout: float | None = None,
    **kw: Any,
) -> redis.asyncio.Redis:
    """An asyncio client for ``url`` with redrive's defaults (bytes replies, keep-alive).

    ``socket_timeout`` must stay above the longest XREADGROUP BLOCK, or a blocked read
    would time out and its reply be lost. Query parameters in the URL win over keyword
    arguments, so ``rediss://h?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required`` works as is;
    hostname checking stays on unless ``ssl_check_hostname=false`` is given.
    ``pool_size`` bounds the connections (per node on a cluster); on one server a caller
    then waits for a free connection instead of failing (redis-py's default pool refuses
    a hundred-and-first). ``node_timeout``, on a cluster, replaces ``socket_timeout``: a
    hung node then holds a command, and redis-py's slot-map refresh (which every command
    of the client waits for), at most that long. (``store.channel`` round trips have
    deadlines of their own.)
    """
    retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
    options = _client_options(validate_url(url), socket_timeout, retry, kw)
    if pool_size is not None:
        options["max_connections"] = pool_size
    if cluster.wanted(url, options):
        if node_timeout is not None:
            options["socket_timeout"] = node_timeout
        # Typed as Redis: RedisCluster speaks the same command API, and the few callers
        # that reach below it (store/channel.py, script loading) ask cluster.is_cluster.
        return cast(redis.asyncio.Redis, cluster.async_client(url, options))
    if pool_size is not None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(url, **options)
        return redis.asyncio.Redis.from_pool(pool)  # closing the client closes the pool
    return redis.asyncio.Redis.from_url(url, **options)


def sync_client(url: str, *, socket_timeout: float | None = 30.0, **kw: Any) -> redis.Redis:
    """A blocking client for ``url`` with the same defaults as :func:`async_client`."""
    retry = redis.retry.Retry(NoBackoff(), 0)
    options = _client_options(validate_url(url), socket_timeout, retry, kw)
    if cluster.wanted(url, options):
        return cast(redis.Redis, cluster.sync_client(url, options))
    return redis.Redis.from_url(url, **options)


def describe_error(exc: BaseException, url: str) -> str:
    """One line for people: what went wrong talking to ``url`` and what to try.

    ACL refusals name the missing permission (``ACL SETUSER <user> +xadd``); a failed
    TLS verification says so instead of posing as an unreachable server.
    """
    shown = redact_url(url)
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, rex.AuthenticationError | rex.AuthenticationWrongNumberOfArgsError) or (
        # A cluster client wraps the refusal of every startup node into one exception.
        isinstance(exc, rex.RedisClusterException) and _AUTH_TEXT.search(detail)
    ):
        return f"authentication failed at {shown} ({detail}): check the user and password"
    permission = permission_hint(exc)
    if permission is not None:
        return f"Redis at {shown} refused: {permission} (see docs/security.md)"
    clustered = _cluster_message(exc, url, shown, detail)
    if clustered is not None:
        return clustered
    transport = _transport_message(exc, url, shown, detail)
    if transport is not None:
        return transport
    if isinstance(exc, rex.MovedError | rex.AskError):
        return f"{shown} is a Redis Cluster node ({detail}): use redis+cluster://host:port"
    return f"Redis at {shown} answered with an error: {detail}"


def _cluster_message(exc: BaseException, url: str, shown: str, detail: str) -> str | None:
    """A Redis Cluster's own failures: not a cluster node, no seed answers, slots not
    served (CLUSTERDOWN), a command across slots."""
    if "cluster mode is not enabled" in detail.lower():
        return f"{shown} is not a Redis Cluster node ({detail}): use redis://host:port for it"
    if isinstance(exc, rex.ClusterDownError | rex.SlotNotCoveredError) or (
        isinstance(exc, rex.RedisClusterException) and "slots are not covered" in detail
    ):
        return (
            f"the Redis Cluster at {shown} is down ({detail}): not every slot is served, "
            "e.g. a master is down with no replica to take over (CLUSTER INFO on a node "
            "shows cluster_state); redrive carries on once it is ok again"
        )
    if isinstance(exc, rex.RedisClusterException) and "cannot be connected" in detail:
        seeds = ", ".join(cluster.split_seeds(url)[1]) or shown
        last = detail.rpartition("reachable node: ")[2] or detail
        return (
            f"cannot connect to any seed node of the Redis Cluster at {shown} "
            f"(tried {seeds}; {last}): are they running, and are the hosts and ports "
            "right? Name more nodes as redis+cluster://host1:port1,host2:port2"
        )
    if isinstance(exc, rex.RedisClusterException) and "same" in detail and "slot" in detail:
        return (
            f"the Redis Cluster at {shown} refused a command across slots ({detail}): "
            "a bug, please report it"
        )
    return None


def _is_cluster_url(url: str) -> bool:
    return scheme_of(url) in cluster.SCHEMES or cluster.detected(url)


def _transport_message(exc: BaseException, url: str, shown: str, detail: str) -> str | None:
    if isinstance(exc, rex.TimeoutError | TimeoutError):
        return f"timed out talking to {shown} ({detail}): is Redis overloaded or unreachable?"
    tls = _tls_failure(exc)
    if tls == "verify":
        return (
            f"TLS verification of {shown} failed ({detail}): check ssl_ca_certs (the CA "
            "that signed the server's certificate) and that the host name matches it"
        )
    if tls == "handshake":
        return (
            f"TLS handshake with {shown} failed ({detail}): a server with "
            "tls-auth-clients wants ssl_certfile and ssl_keyfile (a client certificate)"
        )
    if _is_cluster_url(url) and isinstance(exc, rex.ConnectionError | OSError):
        return (
            f"cannot connect to a node of the Redis Cluster at {shown} ({detail}): that node "
            "is down or unreachable; if it is a master being replaced, try again in a few seconds"
        )
    if isinstance(exc, rex.ConnectionError | OSError | rex.RedisClusterException):
        return (
            f"cannot connect to {shown} ({detail}): is Redis running and is the host, "
            f"port or socket path right? {EMBEDDED_HINT}"
        )
    return None


_AUTH_TEXT = re.compile(r"username-password|WRONGPASS|NOAUTH|Authentication required", re.I)
_NOPERM_COMMAND = re.compile(r"no permissions to run the '([^']+)' command")


def permission_hint(exc: BaseException) -> str | None:
    """What an ACL refusal denied, as a fix (``grant +xadd …``), or None if not one.

    Redis names a refused command, not a refused key; inside a Lua script it names
    neither, so the hint then points at the script's commands.
    """
    text = str(exc)
    command = _NOPERM_COMMAND.search(text)
    if command is not None:
        name = command.group(1)
        return f"the ACL user may not run {name.upper()}: grant it with ACL SETUSER <user> +{name}"
    if isinstance(exc, rex.NoPermissionError):
        if "keys" in text:
            return (
                "the ACL user may not access one of the keys: allow redrive's key patterns "
                "(~<stream> ~retry:* ~dlq:* ~redrive:*)"
            )
        return f"the ACL user lacks a permission ({text})"
    if "user executing the script can't" in text:
        return (
            "the ACL user may not run a command inside one of redrive's Lua scripts: grant "
            "every command its role lists"
        )
    return None


def _tls_failure(exc: BaseException) -> str | None:
    """``verify`` (the certificate or its name), ``handshake`` (other TLS), or None."""
    seen: BaseException | None = exc
    found = None
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in str(seen):
            return "verify"
        if isinstance(seen, ssl.SSLError) or "_ssl.c" in str(seen):
            found = "handshake"  # redis-py keeps only the text of some SSL errors
        seen = seen.__cause__ or seen.__context__
    return found


_STORE_FAILURES = (rex.RedisError, rex.RedisClusterException, OSError)


async def ping(client: redis.asyncio.Redis, url: str) -> None:
    """PING through ``client``; any failure becomes a one-line :class:`StoreError`."""
    try:
        await client.ping()
    except _STORE_FAILURES as exc:
        raise StoreError(describe_error(exc, url)) from exc


def check_connection(url: str, *, timeout: float = 5.0) -> None:
    """Open a short-lived connection to ``url`` and PING it, or raise :class:`StoreError`.

    Example::

        check_connection("redis://localhost:6379/0")   # returns None when Redis answers
    """
    try:
        # A blocking cluster client loads the slot map in its constructor: it may fail too.
        client = sync_client(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except _STORE_FAILURES as exc:
        raise StoreError(describe_error(exc, url)) from exc
    try:
        client.ping()
    except _STORE_FAILURES as exc:
        raise StoreError(describe_error(exc, url)) from exc
    finally:
        client.close()
