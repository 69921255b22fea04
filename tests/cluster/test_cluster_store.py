"""Store on Redis Cluster: URL schemes and detection, scripts, the slot-owner channel."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from redrive.errors import ConfigError
from redrive.store import calls
from redrive.store.calls import Fence
from redrive.store.channel import Channel, Redirected
from redrive.store.connection import async_client, sync_client, validate_url
from redrive.store.keys import dlq
from redrive.store.scripts import scripts
from redrive.testing import RedisProcess
from redrive.testing.cluster import RedisClusterProcess


async def test_cluster_scheme_and_a_plain_url_to_a_cluster_node_give_cluster_clients(
    redis_cluster: RedisClusterProcess, redis_proc: RedisProcess
) -> None:
    explicit = async_client(redis_cluster.url)
    detected = async_client(redis_cluster.plain_url)  # INFO cluster says cluster_enabled:1
    standalone = async_client(redis_proc.url)
    try:
        assert isinstance(explicit, RedisCluster)
        assert isinstance(detected, RedisCluster)
        assert not isinstance(standalone, RedisCluster)
        assert await detected.ping()
    finally:
        for client in (explicit, detected, standalone):
            await client.aclose()
    sync = sync_client(redis_cluster.url)
    try:
        assert sync.ping()
    finally:
        sync.close()


def test_a_cluster_url_with_a_database_number_is_refused() -> None:
    with pytest.raises(ConfigError, match="only database 0"):
        validate_url("redis+cluster://127.0.0.1:7000/3")


async def test_scripts_are_loaded_on_every_master_and_reloaded_after_a_flush(
    redis_cluster: RedisClusterProcess, aredis: redis.asyncio.Redis, prefix: str
) -> None:
    s = scripts()
    await s.load_all(aredis)
    for node in redis_cluster.nodes:
        direct = redis.asyncio.Redis.from_url(node.url)
        try:
            assert all(await direct.script_exists(*(x.sha for x in s.by_name.values())))
        finally:
            await direct.aclose()
    stream = f"{prefix}orders"
    owner = redis.asyncio.Redis.from_url(redis_cluster.master_of(stream).url)
    try:
        await owner.script_flush()  # as on a promoted replica: no scripts there
    finally:
        await owner.aclose()
    await aredis.xgroup_create(stream, "g", id="0", mkstream=True)
    assert await s.ack(aredis, [stream], ["g", "c", "0", "1-1"]) == [0, [], [b"1-1"]]


async def test_typed_calls_run_on_a_cluster_client_within_the_stream_slot(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"  # dlq:{<stream>} hashes to the stream's own slot
    await aredis.xgroup_create(stream, "g", id="0", mkstream=True)
    entry = await aredis.xadd(stream, {"data": b"{}"})
    await aredis.xreadgroup("g", "c1", {stream: ">"})

    def move(consumer: str) -> calls.Call[calls.DeadLetterResult]:
        return calls.dead_letter(stream=stream, dlq=dlq(stream), group="g", consumer=consumer,
                                 entry_id=entry, delete=False, fields=["data", "{}"])  # fmt: skip

    assert (await move("c2")(aredis)).fence is Fence.FENCED
    assert (await move("c1")(aredis)).fence is Fence.MOVED
    assert (await move("c1")(aredis)).fence is Fence.NOT_PENDING
    assert await aredis.xlen(dlq(stream)) == 1


async def test_channel_follows_a_moved_slot_to_its_new_owner(
    redis_cluster: RedisClusterProcess, aredis: redis.asyncio.Redis
) -> None:
    key = await _key_in_an_empty_slot(aredis)
    channel = Channel(aredis, key)
    try:
        [reply] = await channel.roundtrip([("XADD", key, "*", "n", 1)], 5.0)
        assert isinstance(reply, bytes)
        old = redis_cluster.master_of(key)
        new = next(node for node in redis_cluster.nodes if node is not old)
        await _give_slot(redis_cluster, key, new)  # emptied, then handed to another master

        with pytest.raises(Redirected, match="MovedError"):
            await channel.roundtrip([("XLEN", key)], 5.0)
        [length] = await channel.roundtrip([("XLEN", key)], 5.0)  # re-resolved
        assert length == 0, "the new owner answers"
        assert redis_cluster.master_of(key) is new
    finally:
        await channel.close()


async def _key_in_an_empty_slot(client: redis.asyncio.Redis) -> str:
    # Moving a slot without its keys strands them: pick a slot no other test uses.
    await client.initialize()  # type: ignore[attr-defined]
    while True:
        key = f"moved-{uuid.uuid4().hex[:8]}"
        slot = client.keyslot(key)  # type: ignore[attr-defined]
        target = client.get_node_from_key(key)  # type: ignore[attr-defined]
        count = await client.execute_command("CLUSTER COUNTKEYSINSLOT", slot, target_nodes=target)
        if count == 0:
            return key


async def _give_slot(cluster: RedisClusterProcess, key: str, node: RedisProcess) -> None:
    owner = cluster.master_of(key)
    direct = redis.asyncio.Redis.from_url(owner.url)
    try:
        await direct.delete(key)  # SETSLOT NODE refuses to move a slot that has keys
        slot = await direct.execute_command("CLUSTER KEYSLOT", key)
        new_id = await _ask(node, "CLUSTER MYID")
        for member in cluster.nodes:
            peer = redis.asyncio.Redis.from_url(member.url)
            try:
                await peer.execute_command("CLUSTER SETSLOT", slot, "NODE", new_id)
            finally:
                await peer.aclose()
    finally:
        await direct.aclose()
    cluster.wait_healthy()


async def _ask(node: RedisProcess, *command: str) -> bytes:
    direct = redis.asyncio.Redis.from_url(node.url)
    try:
        reply: bytes = await direct.execute_command(*command)
        return reply
    finally:
        await direct.aclose()
