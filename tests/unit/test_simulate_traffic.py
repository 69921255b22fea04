"""The load generator: seeded, unique ids, every kind of bad input as described."""

from __future__ import annotations

import json
from collections import Counter

from redrive.simulate.traffic import EXPECTED, FORGED, SIM_ID, TrafficGenerator


def test_one_seed_gives_the_same_traffic() -> None:
    first = list(TrafficGenerator(seed=5).take(300))
    assert first == list(TrafficGenerator(seed=5).take(300))
    assert first != list(TrafficGenerator(seed=6).take(300))


def test_ids_are_unique_and_carried_in_a_field() -> None:
    planned = list(TrafficGenerator(seed=1, prefix="sim:").take(2000))
    assert len({p.sim_id for p in planned}) == 2000
    assert all(p.fields[SIM_ID.encode()] == p.sim_id.encode() for p in planned)
    assert {p.stream for p in planned} == {"sim:ecommerce:orders", "sim:ecommerce:payments"}


def test_each_kind_is_built_as_documented() -> None:
    mix = dict.fromkeys(EXPECTED, 1.0)
    planned = list(TrafficGenerator(seed=2, mix=mix, oversize_bytes=70_000).take(1000))
    assert set(Counter(p.kind for p in planned)) == set(EXPECTED)
    for p in planned:
        data = p.fields[b"data"]
        if p.kind == "malformed_json":
            assert data.decode().startswith("{")
            try:
                json.loads(data)
            except ValueError:
                continue
            raise AssertionError("malformed JSON parsed")
        if p.kind == "non_utf8":
            assert b"\xff" in data
            continue
        body = json.loads(data)
        if p.kind == "oversized":
            assert len(data) > 70_000
        if p.kind == "forged_meta":
            assert FORGED.items() <= p.fields.items()
        if p.kind == "wrong_type":
            assert isinstance(body.get("total_cents", body.get("amount_cents")), str)
