"""Fixtures of the chaos suite: a scenario's keys, a sync client, and worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import Scenario, Workers


@pytest.fixture
def scenario(redis_url: str, prefix: str) -> Scenario:
    """Private stream, group and ledger keys on this test's Redis."""
    return Scenario(prefix=prefix, url=redis_url)


@pytest.fixture
def workers(scenario: Scenario, tmp_path: Path) -> Iterator[Workers]:
    """Worker subprocesses of this test, all killed by pid at its end, pass or fail."""
    pool = Workers(scenario, tmp_path)
    try:
        yield pool
    finally:
        pool.close()
