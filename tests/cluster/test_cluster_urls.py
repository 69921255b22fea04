"""Several seed nodes in a cluster URL: the client starts while any one of them answers."""

from __future__ import annotations

import json

from redrive.store import keys
from redrive.store.connection import async_client, check_connection, sync_client
from redrive.testing import free_port
from redrive.testing.cluster import RedisClusterProcess
from tests.integration.dlq_support import run_cli


def _first_seed_down(cluster: RedisClusterProcess) -> str:
    live = ",".join(f"127.0.0.1:{node.port}" for node in cluster.nodes_running()[-2:])
    return f"redis+cluster://127.0.0.1:{free_port()},{live}/0"


async def test_the_clients_start_when_the_first_seed_is_down(
    redis_cluster: RedisClusterProcess, prefix: str
) -> None:
    url = _first_seed_down(redis_cluster)
    check_connection(url, timeout=2.0)
    client = async_client(url)
    try:
        # Keys on every master: the whole slot map was learnt from a later seed.
        streams = [f"{prefix}s{i}" for i in range(12)]
        for stream in streams:
            await client.xadd(stream, {"n": "1"})
        assert [await client.xlen(s) for s in streams] == [1] * len(streams)
    finally:
        await client.aclose()
    blocking = sync_client(url)
    try:
        assert blocking.xlen(streams[0]) == 1
    finally:
        blocking.close()


def test_the_cli_works_through_a_later_seed(
    redis_cluster: RedisClusterProcess, prefix: str
) -> None:
    url = _first_seed_down(redis_cluster)
    stream = f"{prefix}orders"
    code, _, err = run_cli(["--redis-url", url, "publish", stream, "--data", '{"order_id": 1}'])
    assert code == 0, err
    plain = sync_client(redis_cluster.url)
    try:
        assert plain.xlen(stream) == 1
        assert json.loads(plain.xrange(stream)[0][1][b"data"]) == {"order_id": 1}
    finally:
        plain.srem(keys.STREAMS_INDEX, stream)
        plain.close()
