"""URLs: a password never reaches a message, and a wrong URL says what to write."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.errors import ConfigError, StoreError
from redrive.store.cluster import split_seeds
from redrive.store.connection import (
    async_client,
    check_connection,
    describe_error,
    redact_url,
    sync_client,
    validate_url,
)

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        (f"redis://:{SECRET}@cache:6379/0", "redis://:***@cache:6379/0"),
        (f"redis://app:{SECRET}@cache:6379/0", "redis://app:***@cache:6379/0"),
        (f"rediss://app:{SECRET}@cache:6380/2", "rediss://app:***@cache:6380/2"),
        (f"redis://{SECRET}@cache", "redis://***@cache"),
        (f"redis://app:p@ss:{SECRET}@cache", "redis://app:***@cache"),
        (
            f"unix:///run/redis.sock?db=1&password={SECRET}",
            "unix:///run/redis.sock?db=1&password=***",
        ),
        (f"unix://app:{SECRET}@/run/redis.sock", "unix://app:***@/run/redis.sock"),
        (
            f"redis+cluster://app:{SECRET}@h1:7000,h2:7001/0",
            "redis+cluster://app:***@h1:7000,h2:7001/0",
        ),
        (
            "rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem",
            "rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem",
        ),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        f"redis://app:{SECRET}@[::1",  # urlsplit rejects the broken IPv6 literal
        f"http://[bad:{SECRET}@host",
        f"??password={SECRET}",
        f"{SECRET}@host:6379",
    ],
)
def test_redact_garbage_without_raising_or_leaking(url: str) -> None:
    assert SECRET not in redact_url(url)


@given(
    scheme=st.sampled_from(["redis", "rediss", "unix", "http", ""]),
    user=st.text(alphabet="abcxyz_-", max_size=6),
    password=st.text(alphabet="ABCDEFGHJKMNPQRSTUVWXYZ23456789!$%^*()", min_size=8, max_size=20),
    tail=st.sampled_from(["host:6379/0", "[::1]:6379", "/tmp/r.sock", "h:bad", "[::1"]),
)
def test_redact_never_leaks_a_userinfo_password(
    scheme: str, user: str, password: str, tail: str
) -> None:
    url = f"{scheme}://{user}:{password}@{tail}"
    assert password not in redact_url(url)


@given(password=st.text(alphabet="ABCDEFGHJKMNPQRSTUVWXYZ23456789", min_size=8, max_size=20))
def test_redact_never_leaks_a_query_password(password: str) -> None:
    assert password not in redact_url(f"unix:///tmp/r.sock?password={password}&db=0")


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://h:6380", "unix:///tmp/r.sock", "REDIS://H:1/0",
     "redis+cluster://h1:7000,h2:7001,[::1]:7002/0", f"rediss+cluster://:{SECRET}@h1,h2:7001"],
)  # fmt: skip
def test_validate_accepts_redis_urls(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("localhost:6379", "invalid Redis URL 'localhost:6379'"),
        ("", "invalid Redis URL ''"),
        (f"http://u:{SECRET}@h:80/", "unsupported Redis URL scheme 'http'"),
        ("redis://h:port/0", "invalid Redis URL"),
        ("unix://", "no socket path"),
        ("redis+cluster://h1:7000,h2:port", "invalid Redis URL"),
        ("redis+cluster://h1:7000,,h3:7002", "empty seed node"),
        ("redis://h1:6379,h2:6379/0", "several nodes are for a Redis Cluster"),
    ],
)
def test_validate_rejects_with_one_line_fix(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_url(url)
    message = str(caught.value)
    assert fragment in message
    assert "redis://" in message or "unix://" in message
    assert "\n" not in message and SECRET not in message


async def test_clients_validate_before_any_io() -> None:
    with pytest.raises(ConfigError):
        async_client("http://localhost")
    with pytest.raises(ConfigError):
        sync_client("localhost:6379")


def test_tls_query_parameters_reach_the_connection() -> None:
    client = sync_client(
        "rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
        "&ssl_cert_reqs=required"
    )
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
        assert kwargs["ssl_certfile"] == "/c.pem" and kwargs["ssl_keyfile"] == "/k.pem"
        assert kwargs["ssl_cert_reqs"] == "required"
        assert kwargs.get("ssl_check_hostname", True) is True
    finally:
        client.close()


async def test_connections_share_one_driver_info_with_redis_py_defaults() -> None:
    driver_info = pytest.importorskip("redis.driver_info")
    default = driver_info.DriverInfo()
    sync, aio = sync_client("redis://127.0.0.1:1/0"), async_client("redis://127.0.0.1:1/0")
    try:
        # Shared, not read from the package metadata again for each connection (start-up).
        made = [c.connection_pool.make_connection() for c in (sync, aio, sync)]
        assert len({id(conn.driver_info) for conn in made}) == 1
        info = made[0].driver_info
        assert (info.formatted_name, info.lib_version) == (
            default.formatted_name,
            default.lib_version,
        )
    finally:
        sync.close()
        await aio.aclose()


def test_unreachable_redis_is_a_one_line_store_error() -> None:
    url = f"redis://app:{SECRET}@127.0.0.1:1/0"  # port 1: nothing listens there
    with pytest.raises(StoreError) as caught:
        check_connection(url, timeout=1.0)
    message = str(caught.value)
    assert "cannot connect to redis://app:***@127.0.0.1:1/0" in message
    assert "redrive server status" in message
    assert SECRET not in message and "\n" not in message


def test_describe_error_names_auth_failures() -> None:
    from redis.exceptions import AuthenticationError

    message = describe_error(AuthenticationError("WRONGPASS invalid"), f"redis://:{SECRET}@h")
    assert message.startswith("authentication failed at redis://:***@h")
    assert SECRET not in message


@pytest.mark.parametrize("char", ["#", "?", "/", "@", ":"])
def test_redact_unencoded_specials_in_password(char: str) -> None:
    password = f"ab{char}{SECRET}"
    for url in (f"redis://app:{password}@h:6379/0", f"redis://:{password}@h", f"{password}@h"):
        assert SECRET not in redact_url(url), url


@pytest.mark.parametrize(
    ("url", "first", "seeds"),
    [
        ("redis+cluster://h:7000", "redis+cluster://h:7000", ["h:7000"]),
        (f"redis+cluster://:{SECRET}@h1:7000,h2,[::1]:7002/0?ssl=1",
         f"redis+cluster://:{SECRET}@h1:7000/0?ssl=1", ["h1:7000", "h2:6379", "[::1]:7002"]),
        ("rediss+cluster://u:p,w@h1:1,h2:2", "rediss+cluster://u:p,w@h1:1", ["h1:1", "h2:2"]),
    ],
)  # fmt: skip
def test_split_seeds_keeps_user_path_and_query_on_the_first(
    url: str, first: str, seeds: list[str]
) -> None:
    assert split_seeds(url) == (first, seeds)


def test_an_unreachable_cluster_names_every_seed() -> None:
    url = f"redis+cluster://:{SECRET}@127.0.0.1:1,127.0.0.1:2"
    with pytest.raises(StoreError) as caught:
        check_connection(url, timeout=1.0)
    message = str(caught.value)
    assert message.startswith("cannot connect to any seed node of the Redis Cluster at ")
    assert "tried 127.0.0.1:1, 127.0.0.1:2" in message
    assert SECRET not in message and "\n" not in message


def test_clusterdown_and_cross_slot_replies_are_not_posed_as_unreachable() -> None:
    from redis.exceptions import ClusterDownError, RedisClusterException

    down = describe_error(ClusterDownError("The cluster is down"), "redis+cluster://h:7000")
    assert down.startswith("the Redis Cluster at redis+cluster://h:7000 is down (")
    cross = RedisClusterException("EVALSHA - all keys must map to the same key slot")
    assert "refused a command across slots" in describe_error(cross, "redis+cluster://h:7000")
