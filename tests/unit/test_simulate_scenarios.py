"""Shipped scenarios load, and a bad scenario file fails with a message that says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from redrive.errors import ConfigError
from redrive.simulate.scenario import CHAOS_KINDS, SHIPPED, load_scenario


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_loads(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.run.messages >= 2


def test_chaos_runs_every_fault_kind_at_least_twice() -> None:
    kinds = [fault.kind for fault in load_scenario("chaos").chaos]
    assert min(kinds.count(kind) for kind in CHAOS_KINDS) >= 2
    restarts = {f.restart for f in load_scenario("chaos").chaos if f.kind == "kill_worker"}
    assert restarts == {"same", "new"}


def test_outage_scenario_has_a_dependency_outage_phase() -> None:
    (phase,) = load_scenario("outage-and-recovery").faults.phases
    assert phase.rates == {"transient": 1.0} and phase.stream == "ecommerce:payments"


def test_overrides_replace_run_values_and_seed_the_faults() -> None:
    scenario = load_scenario("smoke").with_overrides(messages=10, seed=42, rate=None)
    assert (scenario.run.messages, scenario.run.seed, scenario.faults.seed) == (10, 42, 42)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[run]\nmesages = 5\n", "unknown keys"),
        ("[[chaos]]\nkind = 'meteor'\nat = 1\n", "kind 'meteor'"),
        ("[run]\nworkers = 1\n[[chaos]]\nkind = 'kill_worker'\nat = 1\ntarget = 2\n", "targets"),
        ("[input]\nok = 1\nspam = 1\n", "unknown input kinds"),
        ("[oops]\n", "unknown scenario tables"),
        ("[run\n", "Expected"),
    ],
)
def test_bad_scenarios_are_refused(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=complaint):
        load_scenario(str(path))


def test_an_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="smoke"):
        load_scenario("no-such-scenario")
