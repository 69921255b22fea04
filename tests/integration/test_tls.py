"""TLS: ``rediss://`` with a CA file and a client certificate (mutual TLS).

A private ``redis-server`` listens with ``tls-port`` and certificates made by trustme
(its plain port is used only by the fixture to see it is up). Verification is never
switched off silently: a wrong CA or a host name the certificate does not name fails
with one line saying so. Skips when the ``redis-server`` binary was built without TLS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio

from redrive import App
from redrive.errors import EmbeddedServerError, StoreError
from redrive.store.connection import async_client, check_connection
from redrive.testing import RedisProcess, available_redis_binaries, free_port
from tests.integration.helpers import running, until

trustme = pytest.importorskip("trustme")


@dataclass(frozen=True)
class TlsServer:
    port: int
    ca: Path
    other_ca: Path
    cert: Path
    key: Path

    def url(self, host: str = "localhost", *, ca: Path | None = None, **extra: str) -> str:
        query = {"ssl_ca_certs": str(ca or self.ca), "ssl_certfile": str(self.cert),
                 "ssl_keyfile": str(self.key), **extra}  # fmt: skip
        return f"rediss://{host}:{self.port}/0?" + "&".join(f"{k}={v}" for k, v in query.items())


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    binaries = available_redis_binaries()
    if not binaries:
        pytest.skip("no redis-server")
    files = tmp_path_factory.mktemp("tls")
    ca, other_ca = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(files / "ca.pem"))
    other_ca.cert_pem.write_to_path(str(files / "other-ca.pem"))
    server_cert = ca.issue_cert("localhost")  # the name only: 127.0.0.1 must not match
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(files / "server.pem"))
    client = ca.issue_cert("redrive-worker@example.com")
    client.cert_chain_pems[0].write_to_path(str(files / "client.pem"))
    client.private_key_pem.write_to_path(str(files / "client.key"))
    port = free_port()
    server = RedisProcess(binaries[0], extra_config=[
        f"tls-port {port}", f'tls-cert-file "{files / "server.pem"}"',
        f'tls-key-file "{files / "server.pem"}"', f'tls-ca-cert-file "{files / "ca.pem"}"',
        "tls-auth-clients yes",
    ])  # fmt: skip
    try:
        server.start()
    except EmbeddedServerError as exc:
        server.close()
        pytest.skip(f"{binaries[0]} has no TLS support: {exc}")
    try:
        yield TlsServer(port, files / "ca.pem", files / "other-ca.pem",
                        files / "client.pem", files / "client.key")  # fmt: skip
    finally:
        server.close()


def test_mutual_tls_with_the_right_ca_connects(tls_server: TlsServer) -> None:
    check_connection(tls_server.url())


async def test_a_worker_consumes_over_tls(tls_server: TlsServer, prefix: str) -> None:
    url = tls_server.url()
    stream = f"{prefix}orders"
    done: list[int] = []
    app = App()

    @app.handler(stream, group="g")
    async def handle(msg):  # type: ignore[no-untyped-def]
        done.append(msg.data["n"])

    producer: redis.asyncio.Redis = async_client(url)
    try:
        for n in range(50):
            await producer.xadd(stream, {"data": json.dumps({"n": n})})
        async with running(app, url, block_ms=100):
            await until(lambda: len(done) == 50, what="fifty messages over TLS")
    finally:
        await producer.aclose()
    assert sorted(done) == list(range(50))


def test_a_wrong_ca_fails_with_one_clear_line(tls_server: TlsServer) -> None:
    with pytest.raises(StoreError) as failure:
        check_connection(tls_server.url(ca=tls_server.other_ca))
    message = str(failure.value)
    assert message.startswith("TLS verification of rediss://localhost:")
    assert "certificate verify failed" in message and "ssl_ca_certs" in message
    assert "\n" not in message


def test_hostname_checking_is_on_unless_switched_off(tls_server: TlsServer) -> None:
    # The certificate names "localhost", not 127.0.0.1.
    with pytest.raises(StoreError, match=r"TLS verification of rediss://127\.0\.0\.1.*mismatch"):
        check_connection(tls_server.url("127.0.0.1"))
    check_connection(tls_server.url("127.0.0.1", ssl_check_hostname="false"))


def test_without_a_client_certificate_the_server_refuses(tls_server: TlsServer) -> None:
    url = f"rediss://localhost:{tls_server.port}/0?ssl_ca_certs={tls_server.ca}"
    with pytest.raises(StoreError, match=r"TLS handshake .* wants ssl_certfile and ssl_keyfile"):
        check_connection(url)
