"""Public testing helpers: private ``redis-server`` processes and a cluster of them.

Example::

    from redrive.testing import RedisProcess

    with RedisProcess() as proc:
        client = redis.Redis.from_url(proc.url)
"""

from redrive.store.local import RedisProcess
from redrive.store.server import (
    SHARED_PORT,
    available_redis_binaries,
    free_port,
    redis_server_version,
)

__all__ = [
    "SHARED_PORT",
    "RedisProcess",
    "available_redis_binaries",
    "free_port",
    "redis_server_version",
]
