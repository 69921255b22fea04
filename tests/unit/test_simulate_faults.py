"""The fault-injection middleware: seeded, bounded, time-phased, off unless enabled."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from redrive import App
from redrive.core.classify import DEFAULT_RULES, ErrorClass
from redrive.core.message import Message
from redrive.errors import ConfigError
from redrive.runtime.settings import HandlerSpec
from redrive.simulate.faults import (
    ENV_FAULTS,
    FaultPlan,
    FaultRates,
    InjectedPermanentError,
    InjectedProcessingError,
    InjectedTimeout,
    Latency,
    Phase,
    inject_faults,
    install_from_env,
)


async def _ok(msg: Message) -> str:
    return "handled"


def _spec(stream: str = "sim:ecommerce:payments") -> HandlerSpec:
    return HandlerSpec(stream=stream, group="g", fn=_ok, is_async=True)


async def _outcomes(plan: FaultPlan, n: int = 2000, now: float = 0.0) -> Counter[str]:
    call = inject_faults(plan, clock=lambda: now)(_spec(), _ok)
    seen: Counter[str] = Counter()
    for i in range(n):
        try:
            seen[await call(Message.build(stream="s", id=f"1-{i}"))] += 1
        except Exception as exc:
            seen[type(exc).__name__] += 1
    return seen


async def test_rates_are_roughly_honoured_and_reproducible() -> None:
    plan = FaultPlan(seed=3, default=FaultRates(transient=0.2, permanent=0.1, processing=0.1))
    first = await _outcomes(plan)
    assert first == await _outcomes(plan), "one seed must inject the same faults"
    assert 300 < first["InjectedTimeout"] < 500
    assert 120 < first["InjectedPermanentError"] < 280
    assert 120 < first["InjectedProcessingError"] < 280
    assert first["handled"] > 1000


async def test_nothing_is_injected_without_rates() -> None:
    assert await _outcomes(FaultPlan(), n=200) == Counter(handled=200)


async def test_a_phase_applies_only_in_its_window_and_stream() -> None:
    outage = Phase(at=10, duration=5, rates={"transient": 1.0}, stream="ecommerce:payments")
    plan = FaultPlan(phases=(outage,), t0=1000.0)
    assert await _outcomes(plan, n=50, now=1005.0) == Counter(handled=50)
    assert await _outcomes(plan, n=50, now=1012.0) == Counter(InjectedTimeout=50)
    assert await _outcomes(plan, n=50, now=1015.0) == Counter(handled=50)
    assert plan.rates_at("sim:ecommerce:orders", 1012.0).transient == 0


def test_injected_errors_classify_as_their_names_say() -> None:
    assert DEFAULT_RULES.classify(InjectedTimeout()) is ErrorClass.TRANSIENT
    assert DEFAULT_RULES.classify(InjectedPermanentError()) is ErrorClass.PERMANENT
    assert DEFAULT_RULES.classify(InjectedProcessingError()) is ErrorClass.PROCESSING


@pytest.mark.parametrize("dist", ["fixed", "uniform", "exponential", "lognormal"])
def test_latency_draws_stay_within_the_cap(dist: str) -> None:
    latency = Latency(dist, median_ms=5, p99_ms=50, max_ms=40)
    rng = random.Random(1)
    draws = [latency.sample(rng) for _ in range(2000)]
    assert all(0 <= d <= 0.040 for d in draws)
    assert 0.002 < sorted(draws)[1000] < 0.011  # median near 5 ms


@pytest.mark.parametrize(
    "bad",
    [{"transient": 1.5}, {"transient": 0.6, "permanent": 0.6}, {"crash": -0.1}, {"bogus": 1}],
)
def test_invalid_rates_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        FaultRates.from_dict(bad)


def test_plan_round_trips_through_the_environment() -> None:
    plan = FaultPlan(
        seed=9,
        default=FaultRates(transient=0.1, latency=Latency("lognormal", 2, 20)),
        streams={"ecommerce:orders": FaultRates(crash=0.01)},
        phases=(Phase(at=1, duration=2, rates={"transient": 1.0}, note="down"),),
        t0=123.0,
    )
    assert FaultPlan.from_json(plan.to_json()) == plan
    app = App()
    assert install_from_env(app, {}) is None and not app.middleware
    assert install_from_env(app, {ENV_FAULTS: plan.to_json()}) == plan
    assert len(app.middleware) == 1
