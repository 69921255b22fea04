"""publish() / publish_sync(): a reused client, dicts or bodies, chunks, maxlen, refusals."""

from __future__ import annotations

import json

import pytest
import redis
import redis.asyncio

from redrive import App, ConfigError, Message, PublishError, publish, publish_sync
from redrive.store.connection import async_client
from redrive.testing import free_port
from tests.integration.helpers import running, until


async def _bodies(r: redis.asyncio.Redis, stream: str) -> list[bytes]:
    return [fields[b"data"] for _, fields in await r.xrange(stream)]


async def test_dicts_are_published_as_json_in_order(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    ids = await publish(aredis, stream, [{"order_id": "o-1", "city": "Zürich"}, {"n": 2}])

    entries = await aredis.xrange(stream)
    assert ids == [entry_id.decode() for entry_id, _ in entries]
    assert [json.loads(f[b"data"]) for _, f in entries] == [
        {"order_id": "o-1", "city": "Zürich"},
        {"n": 2},
    ]
    assert [list(f) for _, f in entries] == [[b"data"], [b"data"]]


async def test_bytes_and_str_bodies_are_sent_as_they_are(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}raw"
    await publish(aredis, stream, [b'{"a": 1}', '{"b": "é"}', b"{not json"])

    assert await _bodies(aredis, stream) == [b'{"a": 1}', '{"b": "é"}'.encode(), b"{not json"]


async def test_a_generator_of_bodies_is_published(aredis: redis.asyncio.Redis, prefix: str) -> None:
    stream = f"{prefix}gen"
    ids = await publish(aredis, stream, ({"n": n} for n in range(3)))
    assert len(ids) == 3 == await aredis.xlen(stream)


@pytest.mark.parametrize("single", [b'{"a": 1}', '{"a": 1}', {"a": 1}, bytearray(b"{}")])
async def test_a_single_body_where_a_list_belongs_is_refused_before_any_io(
    aredis: redis.asyncio.Redis, r: redis.Redis, prefix: str, single: object
) -> None:
    stream = f"{prefix}one"
    with pytest.raises(ConfigError, match=r"one \w+ body, not a list of bodies: pass \[body\]"):
        await publish(aredis, stream, single)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not a list of bodies"):
        publish_sync(r, stream, single)  # type: ignore[arg-type]
    assert await aredis.exists(stream) == 0  # not one message per byte, per key: none


@pytest.mark.parametrize(
    ("bodies", "message"),
    [
        ([{"ok": 1}, 42], "body 2 is a int: give a dict"),
        ([{"ok": 1}, ["a", "list"]], "body 2 is a list"),
        ([{"when": object()}], "body 1: value cannot be encoded as JSON"),
    ],
)
async def test_a_bad_body_publishes_nothing(
    aredis: redis.asyncio.Redis, prefix: str, bodies: list[object], message: str
) -> None:
    stream = f"{prefix}bad"
    with pytest.raises(ConfigError, match=message):
        await publish(aredis, stream, bodies)  # type: ignore[arg-type]
    assert await aredis.exists(stream) == 0


@pytest.mark.parametrize(
    ("stream", "kwargs", "message"),
    [
        ("dlq:orders", {}, "uses a prefix"),
        ("orders", {"maxlen": 0}, "maxlen=0: use an integer >= 1"),
        ("orders", {"chunk": 0}, "chunk=0"),
    ],
)
async def test_bad_arguments_are_refused(
    aredis: redis.asyncio.Redis, stream: str, kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        await publish(aredis, stream, [{}], **kwargs)


async def test_calls_reuse_the_callers_connection(redis_url: str, prefix: str) -> None:
    name = f"{prefix}publisher".replace(":", "-")
    client = async_client(redis_url, client_name=name)
    try:
        for n in range(5):
            await publish(client, f"{prefix}s", [{"n": n}] * 3)
        listed = await client.client_list()
        assert [c["name"] for c in listed].count(name) == 1
        assert await client.xlen(f"{prefix}s") == 15
    finally:
        await client.aclose()


async def test_chunks_keep_the_order_and_maxlen_trims(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}many"
    ids = await publish(aredis, stream, [{"n": n} for n in range(1201)], chunk=500)
    assert ids == [i.decode() for i, _ in await aredis.xrange(stream)]
    assert [json.loads(b) for b in await _bodies(aredis, stream)] == [{"n": n} for n in range(1201)]

    trimmed = f"{prefix}trimmed"
    await publish(aredis, trimmed, [{}] * 1500, maxlen=100)
    assert 100 <= await aredis.xlen(trimmed) < 1500  # MAXLEN ~ trims whole nodes


def test_publish_sync_reuses_a_blocking_client(r: redis.Redis, prefix: str) -> None:
    stream = f"{prefix}sync"
    first = publish_sync(r, stream, [{"n": 1}, b'{"n": 2}'])
    second = publish_sync(r, stream, ['{"n": 3}'], maxlen=10)

    assert [i.decode() for i, _ in r.xrange(stream)] == first + second
    assert [json.loads(f[b"data"]) for _, f in r.xrange(stream)] == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_a_redis_failure_is_a_publish_error_saying_what_was_confirmed(prefix: str) -> None:
    client = async_client(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(PublishError, match=r"failed after 0 of 2 messages") as caught:
            await publish(client, f"{prefix}s", [{}, {}])
    finally:
        await client.aclose()
    assert (caught.value.published, caught.value.total) == ([], 2)


async def test_what_is_published_is_what_a_handler_reads(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    seen: list[Message] = []
    app = App()

    @app.handler(stream, group="g")
    async def handle(msg: Message) -> None:
        seen.append(msg)

    sent = [{"order_id": "o-1", "items": [1, 2]}, {"order_id": "o-2", "note": None}]
    ids = await publish(aredis, stream, sent)
    async with running(app, redis_url, block_ms=100):
        await until(lambda: len(seen) == 2, what="both messages")

    assert [(m.id, m.data, m.attempt) for m in seen] == [(ids[0], sent[0], 1), (ids[1], sent[1], 1)]
