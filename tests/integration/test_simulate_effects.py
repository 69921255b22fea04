"""The exactly-once check of an idempotent simulation (``redrive.simulate.effects``): each
produced message's effect counter against its outcomes, on a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from redrive.simulate.effects import count_effects
from redrive.simulate.ledger import effect_key
from redrive.store.connection import sync_client


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = sync_client(redis_url)
    try:
        yield c
    finally:
        c.close()


def test_every_kind_of_effect_defect_is_counted(client: redis.Redis, prefix: str) -> None:
    stream = f"{prefix}orders"
    client.hset(effect_key(stream), mapping={"1-1": 1, "1-2": 1, "1-3": 2, "1-5": 1, "9-9": 1})
    outcomes = {
        "1-1": ["succeeded"],  # once
        "1-2": ["succeeded", "succeeded"],  # ran twice, absorbed
        "1-3": ["succeeded", "succeeded"],  # ran twice, doubled
        "1-4": ["succeeded"],  # ran, settled, no effect: missing
        "1-5": ["permanent_error"],  # dead with an effect
        "1-6": ["poison"],  # dead without: as it must be
        "1-7": ["succeeded"],  # no effect yet, still pending: not a defect here
    }
    produced = [f"1-{i}" for i in range(1, 9)]  # 1-8: no outcome (lost or pending)

    got = count_effects(client, stream, outcomes, produced, unsettled={"1-7", "1-8"})

    assert (got.once, got.dead_without) == (2, 1)
    assert (got.double, got.missing, got.on_dead, got.unexpected) == (
        ("1-3",), ("1-4",), ("1-5",), ("9-9",))  # fmt: skip
    assert (got.repeated_runs, got.extra_runs, got.absorbed) == (2, 2, 1)
    assert got.defects == 4


def test_a_clean_run_has_no_defects(client: redis.Redis, prefix: str) -> None:
    stream = f"{prefix}orders"
    client.hset(effect_key(stream), mapping={"1-1": 1})

    got = count_effects(client, stream, {"1-1": ["succeeded"], "1-2": ["poison"]},
                        ["1-1", "1-2"], unsettled=set())  # fmt: skip

    assert (got.once, got.dead_without, got.defects) == (1, 1, 0)
    assert got.to_json()["defect_ids"] == {"double": [], "missing": [], "on_dead": [],
                                           "unexpected": []}  # fmt: skip
