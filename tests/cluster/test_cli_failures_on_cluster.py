"""A real Redis Cluster behind a wrong password: one line, exit 2 (health: 3), no traceback.

The failure matrix (tests/integration/test_cli_failures.py) covers ``redis+cluster://``
URLs against standalone servers; here the nodes really are a cluster, with a password set
for the length of the test.
"""

from __future__ import annotations

import pytest

from redrive.testing.cluster import RedisClusterProcess
from tests.cluster.conftest import PASSWORD
from tests.integration.dlq_support import run_cli

CASES = [(["health"], 3), (["dlq", "list"], 2), (["monitor", "--once"], 2), (["audit", "s"], 2)]


@pytest.mark.parametrize(("argv", "code"), CASES)
def test_a_wrong_cluster_password_is_one_line(
    guarded: RedisClusterProcess, argv: list[str], code: int
) -> None:
    wrong = guarded.url.replace("redis+cluster://", "redis+cluster://:not-the-password@")
    exit_code, out, err = run_cli(["--redis-url", wrong, *argv])
    assert exit_code == code and not out
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "authentication failed at redis+cluster://:***@" in err and "not-the-password" not in err
    right = guarded.url.replace("redis+cluster://", f"redis+cluster://:{PASSWORD}@")
    exit_code, _, err = run_cli(["--redis-url", right, "metrics", "--once"])
    assert exit_code == 0, err
