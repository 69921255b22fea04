"""A ``dlq:{S}`` that holds a string, not a stream: the commands that act on every DLQ
(a bare ``--id``, a filter with no STREAM) skip it with one warning and act on the others;
the ones that name it are refused and change nothing; so is an import with records for it.

The read-only commands and the refusals are in test_cli_failures.py (``dlq-wrong-type``,
``dlq-wrong-type-named``); here the commands that change the *other* DLQs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio

from redrive import dlq
from redrive.store import keys
from redrive.store.connection import async_client
from tests.integration.dlq_support import seed
from tests.integration.test_dlq_cli import cli

BAD_VALUE = b"not a stream"


@pytest.fixture
async def own_db(redis_url: str) -> AsyncIterator[tuple[str, redis.asyncio.Redis]]:
    """Database 4: the index lists only this test's streams, so 'every DLQ' is ours."""
    url = redis_url[: -len("/0")] + "/4" if redis_url.endswith("/0") else redis_url
    client = async_client(url)
    try:
        yield url, client
    finally:
        await client.aclose()


@pytest.fixture
async def streams(
    own_db: tuple[str, redis.asyncio.Redis], prefix: str
) -> AsyncIterator[tuple[str, str, str]]:
    """(good stream with three dead letters of group ``<prefix>g``, bad stream, group)."""
    _, r = own_db
    good, bad, group = f"{prefix}orders", f"{prefix}baddlq", f"{prefix}g"
    for error_type in ("AError", "BError", "CError"):
        await seed(r, good, 1, group=group, error_type=error_type)
    await r.set(keys.dlq(bad), BAD_VALUE)
    await r.sadd(keys.STREAMS_INDEX, bad)
    try:
        yield good, bad, group
    finally:
        await r.srem(keys.STREAMS_INDEX, good, bad)


def _one_warning(err: str, bad: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: "), err
    assert f"{keys.dlq(bad)} is a string, not a stream: skipped" in lines[0], err
    assert f"RENAMENX '{keys.dlq(bad)}'" in lines[0], "says how to move it aside"


async def test_delete_replay_and_purge_act_on_the_good_dlq_and_warn_once_about_the_bad(
    own_db: tuple[str, redis.asyncio.Redis], streams: tuple[str, str, str]
) -> None:
    url, r = own_db
    good, bad, group = streams
    [a, b, _] = [e.id for e in (await dlq.list_dead_letters(r, dlq.Filter((good,)))).entries]

    code, out, err = await cli(url, "dlq", "delete", "--id", a, "--yes")  # a bare id
    assert code == 0 and f"deleted 1 dead letter ({good}: 1)" in out, (out, err)
    _one_warning(err, bad)

    code, out, err = await cli(url, "dlq", "replay", "--error-type", "BError", "-g", group)
    assert code == 0 and "replayed 1" in out, (out, err)
    _one_warning(err, bad)

    code, out, err = await cli(url, "dlq", "purge", "--error-type", "CError", "--yes")
    assert code == 0 and f"deleted 1 dead letter ({good}: 1)" in out, (out, err)
    _one_warning(err, bad)

    assert await r.xlen(keys.dlq(good)) == 0, "each command did its part"
    [(_, fields)] = await r.xrange(keys.retry_stream(good, group))
    assert fields[b"redrive-replayed-from"] == b.encode()
    assert await r.get(keys.dlq(bad)) == BAD_VALUE, "the bad key is left as it was"


async def test_refused_when_named_and_nothing_moves(
    own_db: tuple[str, redis.asyncio.Redis], streams: tuple[str, str, str]
) -> None:
    url, r = own_db
    good, bad, _ = streams
    before = await r.xrange(keys.dlq(good))

    for argv in (["replay", good, bad, "--all"], ["purge", good, bad, "--all", "--yes"],
                 ["list", "--id", f"{bad}@1-0"], ["stats", good, bad]):  # fmt: skip
        code, out, err = await cli(url, "dlq", *argv)

        assert code == 2 and not out, (argv, out, err)
        assert err.strip().splitlines() == [err.strip()], err
        assert f"{keys.dlq(bad)} is a string, not a stream: nothing read or changed" in err
    assert await r.xrange(keys.dlq(good)) == before, "the good DLQ named with it is untouched"
    assert await r.get(keys.dlq(bad)) == BAD_VALUE


async def test_the_library_logs_a_warning_unless_told_where_to_report(
    own_db: tuple[str, redis.asyncio.Redis],
    streams: tuple[str, str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, bad, _ = streams
    client = dlq.connect(own_db[0])
    try:
        with caplog.at_level(logging.WARNING, logger="redrive.dlq"):
            page = await dlq.list_dead_letters(client, dlq.Filter())
        told: list[str] = []
        stats = await dlq.dlq_stats(client, dlq.Filter(), on_skip=told.append)
        with pytest.raises(dlq.WrongTypeError, match="is a string, not a stream"):
            await dlq.by_ids(client, dlq.Filter(ids=(f"{bad}@1-0",)))
    finally:
        await client.aclose()

    assert {e.stream for e in page.entries} == {good} and len(page.entries) == 3
    assert [m.getMessage() for m in caplog.records] == told, "the same one line"
    assert len(told) == 1 and keys.dlq(bad) in told[0]
    assert stats.total == 3


async def test_an_audit_key_or_target_of_another_type_refuses_before_anything_moves(
    own_db: tuple[str, redis.asyncio.Redis],
    redis_url: str,
    streams: tuple[str, str, str],
    tmp_path: Path,
) -> None:
    """replay.lua and purge.lua delete, then write the audit trail: a trail of another
    type would fail them after the delete, and "error" would be said of a done change."""
    url, r = own_db
    good, _, group = streams
    trail, target = keys.audit_trail(good), f"{good}:target"
    archive = tmp_path / "dlq.jsonl"
    assert (await cli(url, "dlq", "export", good, "-o", str(archive)))[0] == 0
    await r.set(trail, BAD_VALUE)
    await r.set(target, BAD_VALUE)
    before = await r.xrange(keys.dlq(good))

    runs = [(["replay", good, "--all"], trail), (["purge", good, "--all", "--yes"], trail),
            (["replay", good, "--all", "--to", target], target)]  # fmt: skip
    for argv, key in runs:
        _refused(await cli(url, "dlq", *argv), key)
    if url != redis_url:  # a database of our own: its global audit stream may be broken
        await r.delete(keys.AUDIT)
        await r.set(keys.AUDIT, BAD_VALUE)
        try:
            imported = await cli(url, "dlq", "import", str(archive), "--allow-duplicates")
            _refused(imported, keys.AUDIT)
        finally:
            await r.delete(keys.AUDIT)
    assert await r.xrange(keys.dlq(good)) == before, "nothing moved, deleted or imported"
    assert not await r.exists(keys.retry_stream(good, group))
    assert await r.get(trail) == BAD_VALUE and await r.get(target) == BAD_VALUE


def _refused(result: tuple[int, str, str], key: str) -> None:
    code, out, err = result
    assert code == 2 and not out.strip(), (out, err)
    assert err.strip().splitlines() == [err.strip()], err
    assert f"{key} is a string, not a stream: nothing" in err, err
    assert f"RENAMENX '{key}'" in err, err
