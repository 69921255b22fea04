"""Least-privilege ACL rules for redrive's three roles (docs/security.md explains them).

- ``worker``: consumes, retries, dead-letters (``redrive worker``, ``App.run``);
- ``operator``: everything a worker can, plus DLQ replay, purge, delete, export/import;
- ``monitor``: reads (``redrive dlq list|show|stats|export``, ``redrive monitor``,
  ``redrive metrics``, ``redrive audit``) and records ``redrive health`` alert states: the
  one write it may make is ``HSET redrive:health:state`` inside ``WATCH``/``MULTI``/``EXEC``.

Keys are limited to the source streams (patterns you pass) and redrive's own prefixes;
commands to what redrive sends, including the commands inside its Lua scripts (Redis
checks those too). The rules work on Redis 6.2 and later; on Redis 7 the monitor's HSET
is bound to the health-state key by a selector, on 6.2 (no selectors) it cannot be.

Example::

    rules = acl_rules("worker", streams=["ecommerce:*"])
    client.execute_command("ACL", "SETUSER", "orders-worker", "on", ">s3cret", *rules)
"""

from __future__ import annotations

from collections.abc import Sequence

from redrive.errors import ConfigError
from redrive.store.keys import HEALTH_STATE

#: redrive's own key prefixes (retry:{S}:G, dlq:{S}, redrive:…); see store/keys.py.
OWN_KEYS = ("retry:*", "dlq:*", "redrive:*")

# (CLIENT SETINFO, sent by redis-py on connect, is left out: Redis < 7.2 does not
# know it, and redis-py ignores its refusal.)
_CONNECT = ("ping", "info")
_SCRIPTS = ("evalsha", "script|load")  # by SHA only: no free-form EVAL
_READ = (
    "xlen", "xrange", "xrevrange", "xpending", "xinfo|groups", "xinfo|consumers",
    "xinfo|stream", "hget", "hgetall", "smembers", "sismember", "zcard", "zrange",
    "zrangebyscore", "exists", "type", "ttl", "pttl", "hmget", "lrange",
    "zrevrange",  # the jobs list (redrive dashboard)
)  # fmt: skip
_WORKER = (
    *_CONNECT, *_SCRIPTS, *_READ,
    # the loop and its scripts: read, settle, retry, dead-letter, reclaim, retire
    "xreadgroup", "xack", "xadd", "xdel", "xclaim", "xautoclaim", "xtrim",
    "xgroup|create", "xgroup|createconsumer", "xgroup|delconsumer",
    "zadd", "zrem", "hincrby", "hdel", "hset", "expire", "sadd",
    # the consumer name lease (runtime/liveness.py, the heartbeat script)
    "get", "set",
    # idempotency (runtime/idempotency.py): claims (a hash with leases on the server's
    # clock), done marks (a sorted set, the ended ones trimmed), effects that expire/delete
    "time", "zmscore", "zscore", "zcount", "zremrangebyrank", "hrandfield", "pexpire", "del",
    # a stopping worker ends its own blocked reads at once (runtime/reader.py, Reader.stop)
    "client|id", "client|unblock",
)  # fmt: skip
_TRANSACTIONS = ("multi", "exec", "watch", "unwatch", "discard")
# The dashboard's snapshots and supervised jobs (dlq/snapshot.py, dlq/jobs*.py) as well.
_OPERATOR = (*_WORKER, *_TRANSACTIONS, "rpush", "srem", "hsetnx", "persist")
# redrive health claims each state change with WATCH/MULTI/HSET/EXEC (monitoring/alerts.py).
_MONITOR = (*_CONNECT, *_READ, *_TRANSACTIONS)

ROLES: dict[str, tuple[str, ...]] = {
    "worker": _WORKER,
    "operator": _OPERATOR,
    "monitor": _MONITOR,
}


def acl_rules(
    role: str, *, streams: Sequence[str], redis_version: tuple[int, ...] = (7, 0)
) -> list[str]:
    """``ACL SETUSER`` rules (after the user's name, ``on`` and password) for ``role``.

    ``streams`` are key patterns of the source streams the user may touch, such as
    ``ecommerce:*``; redrive's own keys are always added. ``redis_version`` of the
    server decides how the monitor's one write is granted (a selector needs Redis 7).
    """
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not streams:
        raise ConfigError("name the source streams (key patterns such as 'ecommerce:*')")
    keys = [f"~{pattern}" for pattern in (*streams, *OWN_KEYS)]
    rules = ["resetkeys", *keys, "resetchannels", "-@all", *(f"+{c}" for c in ROLES[role])]
    if role == "monitor":
        rules.append(_health_state_grant(redis_version))
    return rules


def _health_state_grant(redis_version: tuple[int, ...]) -> str:
    if redis_version >= (7, 0):
        return f"(~{HEALTH_STATE} +hset)"  # HSET on that one key only
    return "+hset"  # Redis 6.2: on every key the user may access (docs/security.md)
