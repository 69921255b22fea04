"""Every CLI command against a Redis Cluster that cannot serve it: one line on stderr,
the exit code of docs/operations.md ("Exit codes"), no traceback (issue 16).

The rows are the cluster ones of the table that tests/integration/test_cli_failures.py
reads: ``cluster-wrong-port`` (several seed nodes, none answering), ``not-a-cluster`` (a
standalone server named ``redis+cluster://``), ``cluster-wrong-password`` (the session's
real cluster behind a password) and ``cluster-down`` (a cluster with a master gone and
no replica to promote: ``cluster_state:fail``, CLUSTERDOWN on the survivors).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redrive.testing import RedisProcess, available_redis_binaries, free_port
from redrive.testing.cluster import RedisClusterProcess
from tests.integration.dlq_support import run_cli
from tests.integration.test_cli_failures import CODES, ON_CLUSTER, TALKERS

STREAM = "contract:orders"

# redis-py's cluster client leaks connections after a dead node (conftest.py,
# collect_redis_py_leaks): collected after each test here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.usefixtures("collect_redis_py_leaks"),
]


@pytest.fixture(scope="module")
def standalone() -> Iterator[RedisProcess]:
    """A server that is not a cluster node."""
    with RedisProcess() as server:
        yield server


@pytest.fixture(scope="module")
def broken_cluster() -> Iterator[RedisClusterProcess]:
    """A 3-master cluster, no replicas, with the master of ``STREAM`` killed: the other
    two report ``cluster_state:fail`` and answer CLUSTERDOWN."""
    with RedisClusterProcess(available_redis_binaries()[0], masters=3) as cluster:
        victim = cluster.master_of("{" + STREAM + "}")
        victim.kill()
        survivor = cluster.nodes_running()[0]
        probe = redis.Redis(port=survivor.port, socket_timeout=5)
        deadline = time.monotonic() + 30
        while probe.cluster("INFO")["cluster_state"] != "fail":
            assert time.monotonic() < deadline, "the cluster never noticed the dead master"
            time.sleep(0.05)
        probe.close()
        yield cluster


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An app module, an import file and an output path, as the commands' arguments."""
    (tmp_path / "contract_app.py").write_text(
        f"from redrive import App\napp = App()\n\n@app.handler({STREAM!r}, group='g')\n"
        "async def handle(msg):\n    pass\n"
    )
    archive = tmp_path / "archive.jsonl"
    line = {"v": 1, "stream": STREAM, "id": "1-0", "fields": [["data", "{}"]]}
    archive.write_text(json.dumps(line) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("REDRIVE_REDIS_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return {"S": STREAM, "OUT": str(tmp_path / "out.jsonl"), "ARCHIVE": str(archive),
            "APP": "contract_app:app", "DATA": str(tmp_path / "embedded")}  # fmt: skip


def _url(failure: str, request: pytest.FixtureRequest) -> str:
    if failure == "cluster-wrong-port":
        return f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    if failure == "not-a-cluster":
        return f"redis+cluster://127.0.0.1:{request.getfixturevalue('standalone').port}"
    if failure == "cluster-wrong-password":
        cluster = request.getfixturevalue("guarded")
        return cluster.url.replace("redis+cluster://", "redis+cluster://:not-the-password@")
    cluster = request.getfixturevalue("broken_cluster")
    return cluster.url  # a live node of the broken cluster


@pytest.mark.parametrize("command", list(TALKERS))
@pytest.mark.parametrize("failure", ON_CLUSTER)
def test_every_command_on_a_failing_cluster_is_one_line_and_the_documented_code(
    failure: str, command: str, workdir: dict[str, str], request: pytest.FixtureRequest
) -> None:
    url = _url(failure, request)
    argv = [part.format(**workdir) for part in TALKERS[command]]

    code, out, err = run_cli(["--data-dir", workdir["DATA"], "--redis-url", url, *argv])

    health, other = CODES[failure]
    assert code == (health if command == "health" else other), err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert not out.strip() or command == "demo", out
    assert "not-the-password" not in err
    expected = {
        "cluster-wrong-port": "cannot connect to any seed node of the Redis Cluster at",
        "not-a-cluster": "is not a Redis Cluster node",
        "cluster-wrong-password": "authentication failed at redis+cluster://:***@",
        "cluster-down": "the Redis Cluster at",
    }[failure]
    assert expected in err, err
    if failure == "cluster-down":  # CLUSTERDOWN from a survivor, or the dead master named
        assert " is down (" in err or "cannot connect to a node of the Redis Cluster" in err
