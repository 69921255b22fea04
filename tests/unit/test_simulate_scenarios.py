"""Shipped scenarios load, and a bad scenario file fails with a message that says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from redrive.errors import ConfigError
from redrive.simulate.scenario import CHAOS_KINDS, SHIPPED, load_scenario
from redrive.simulate.worker_app import ENV_SIM, build_sim_app, sim_env


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
        # The shipped flaky-dependency once had this: every worker died at import.
        ("[handler]\nbreaker_min_calls = 200\n", r"\[handler\] breaker: .*min_calls=200"),
        ("[handler]\nvisibility_timeout = 0\n", r"\[handler\] visibility_timeout=0"),
        ("[handler]\nmax_retries = -1\n", r"\[handler\] max_retries=-1"),
        ("[handler]\nprefetch = 0\n", r"\[handler\] prefetch=0"),
        ("[run]\nmessages = 'lots'\n", r"\[run\]: messages = 'lots': use an integer"),
        ("[handler]\nbreaker = 'yes'\n", "breaker = 'yes': use true or false"),
        ("[[chaos]]\nat = 1\n", r"\[\[chaos\]\]: .*kind"),
        ("[faults.streams.'ecommerce:paymentz']\ntransient = 0.1\n", "'ecommerce:paymentz'"),
    ],
)
def test_bad_scenarios_are_refused(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=complaint) as caught:
        load_scenario(str(path))
    assert str(path) in str(caught.value)  # the message names the file


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_builds_the_workers_app(name: str) -> None:
    # What each worker process does at import: a scenario that loads must also build.
    scenario = load_scenario(name)
    env = {ENV_SIM: sim_env("sim:", scenario.run.seed, "w1", scenario.handler)}
    app = build_sim_app(env)
    assert {spec.stream for spec in app.specs} == {"sim:ecommerce:orders", "sim:ecommerce:payments"}
    for spec in app.specs:
        assert spec.retry == scenario.handler.retry_policy()
        assert spec.breaker == scenario.handler.breaker_policy()
        assert spec.visibility_timeout == scenario.handler.visibility_timeout


def test_flaky_dependency_judges_its_breaker_over_200_calls() -> None:
    breaker = load_scenario("flaky-dependency").handler.breaker_policy()
    assert breaker is not None and (breaker.window, breaker.min_calls) == (200, 200)


def test_a_bad_scenario_exits_2_with_one_line_before_starting_anything(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[handler]\nbreaker_min_calls = 200\n")
    done = subprocess.run(
        [sys.executable, "-m", "redrive.cli", "simulate", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "breaker_min_calls" in line and str(path) in line


def test_an_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="smoke"):
        load_scenario("no-such-scenario")
