"""Fault-injection middleware: seeded errors, latency and crashes around every handler.

Off unless enabled: nothing is injected until an app calls ``app.use(inject_faults(plan))``
(or :func:`install_from_env` finds ``REDRIVE_FAULTS``). A :class:`FaultPlan` holds the
steady rates per stream and *phases* — windows of time in which other rates apply (a
dependency outage: ``transient = 1.0`` for ten seconds).

Each delivery draws from a generator seeded by (seed, stream, entry id, attempt), so one
seed injects the same faults into the same deliveries whichever worker runs them; a retry
is a new entry, so it draws again. Crashes draw from a per-process generator instead:
keyed by the message, a crash would repeat on every re-delivery and turn every crash
into a crash loop.

Example (in code)::

    from redrive.simulate.faults import FaultPlan, FaultRates, Latency, inject_faults

    plan = FaultPlan(seed=7, default=FaultRates(transient=0.05, latency=Latency.fixed(2)))
    app.use(inject_faults(plan))

Example (environment, read by :func:`install_from_env`)::

    REDRIVE_FAULTS='{"seed": 7, "default": {"transient": 0.05}}' redrive worker mod:app
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from redrive.core.message import Message
from redrive.errors import ConfigError, ValidationError
from redrive.runtime.app import App
from redrive.runtime.settings import AsyncHandler, HandlerSpec, Middleware

ENV_FAULTS = "REDRIVE_FAULTS"
ENV_SALT = "REDRIVE_FAULTS_SALT"
CRASH_EXIT_CODE = 86  # distinctive, so a supervisor can tell an injected crash
DISTRIBUTIONS = ("fixed", "uniform", "exponential", "lognormal")
_Z99 = 2.3263  # the 99th percentile of the standard normal


class InjectedTimeout(TimeoutError):
    """An injected transient fault (a dependency did not answer): retried."""


class InjectedPermanentError(ValidationError):
    """An injected permanent fault (the message is judged bad): dead-lettered at once."""


class InjectedProcessingError(Exception):
    """An injected processing fault (a business rule failed): retried, then dead."""


@dataclass(frozen=True, slots=True)
class Latency:
    """Added handler latency in milliseconds, drawn from a distribution.

    ``fixed``: always ``median_ms``; ``uniform``: 0 to ``2 * median_ms``; ``exponential``:
    mean ``median_ms``; ``lognormal``: median ``median_ms`` and 99th percentile
    ``p99_ms``. Every draw is capped at ``max_ms``.
    """

    dist: str = "fixed"
    median_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 5000.0

    def __post_init__(self) -> None:
        if self.dist not in DISTRIBUTIONS:
            raise ConfigError(f"latency dist {self.dist!r}: use one of {', '.join(DISTRIBUTIONS)}")
        if not (0 <= self.median_ms <= self.max_ms and self.p99_ms >= 0):
            raise ConfigError(f"latency {self}: need 0 <= median_ms <= max_ms and p99_ms >= 0")
        if self.dist == "lognormal" and self.p99_ms < self.median_ms:
            raise ConfigError("lognormal latency: p99_ms must be >= median_ms")

    @classmethod
    def fixed(cls, ms: float) -> Latency:
        """Always ``ms`` milliseconds."""
        return cls("fixed", ms)

    def sample(self, rng: random.Random) -> float:
        """One draw, in seconds."""
        m = self.median_ms
        if m <= 0:
            return 0.0
        if self.dist == "uniform":
            ms = rng.uniform(0, 2 * m)
        elif self.dist == "exponential":
            ms = rng.expovariate(1 / m)
        elif self.dist == "lognormal":
            sigma = math.log(max(self.p99_ms, m) / m) / _Z99
            ms = rng.lognormvariate(math.log(m), sigma)
        else:
            ms = m
        return min(ms, self.max_ms) / 1000


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probabilities (per delivery) of each injected fault, and the added latency.

    ``transient + permanent + processing`` must not exceed 1; ``crash`` is drawn apart
    (``os._exit`` before the handler runs, as a segfault or an OOM kill would).
    """

    transient: float = 0.0
    permanent: float = 0.0
    processing: float = 0.0
    crash: float = 0.0
    latency: Latency | None = None

    def __post_init__(self) -> None:
        for name in ("transient", "permanent", "processing", "crash"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value <= 1):
                raise ConfigError(f"fault rate {name}={value!r}: use a probability in [0, 1]")
        if self.transient + self.permanent + self.processing > 1 + 1e-9:
            raise ConfigError("transient + permanent + processing must not exceed 1")

    @property
    def enabled(self) -> bool:
        """True if anything at all would be injected."""
        rates = self.transient + self.permanent + self.processing + self.crash
        return rates > 0 or (self.latency is not None and self.latency.median_ms > 0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: FaultRates | None = None) -> FaultRates:
        """Build from a TOML/JSON table; keys missing from ``data`` keep ``base``'s values."""
        allowed = {"transient", "permanent", "processing", "crash", "latency"}
        unknown = set(data) - allowed
        if unknown:
            raise ConfigError(f"unknown fault keys {sorted(unknown)}: use {sorted(allowed)}")
        out = base or cls()
        if "latency" in data:
            raw = data["latency"]
            out = replace(out, latency=None if raw is None else Latency(**dict(raw)))
        return replace(
            out,
            transient=float(data.get("transient", out.transient)),
            permanent=float(data.get("permanent", out.permanent)),
            processing=float(data.get("processing", out.processing)),
            crash=float(data.get("crash", out.crash)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The inverse of :meth:`from_dict`."""
        out: dict[str, Any] = {
            "transient": self.transient,
            "permanent": self.permanent,
            "processing": self.processing,
            "crash": self.crash,
        }
        if self.latency is not None:
            lat = self.latency
            out["latency"] = {
                "dist": lat.dist,
                "median_ms": lat.median_ms,
                "p99_ms": lat.p99_ms,
                "max_ms": lat.max_ms,
            }
        return out


@dataclass(frozen=True, slots=True)
class Phase:
    """Rates that replace the steady ones from ``at`` for ``duration`` seconds.

    Times are seconds after the plan's ``t0`` (epoch seconds, set when a run starts).
    ``stream`` limits the phase to one stream (without its simulation prefix); ``None``
    applies it to all.
    """

    at: float
    duration: float
    rates: Mapping[str, Any]
    stream: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.at < 0 or self.duration <= 0:
            raise ConfigError(f"phase at={self.at} duration={self.duration}: need at >= 0, > 0")
        FaultRates.from_dict(self.rates)  # validate early, with the table's own message

    def covers(self, stream: str, offset: float) -> bool:
        """True if this phase applies to ``stream`` at ``offset`` seconds after t0."""
        hit = self.stream is None or stream == self.stream or stream.endswith(":" + self.stream)
        return hit and self.at <= offset < self.at + self.duration


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Steady rates (``default``, overridden per stream) plus phases over time."""

    seed: int = 0
    default: FaultRates = field(default_factory=FaultRates)
    streams: Mapping[str, FaultRates] = field(default_factory=dict)
    phases: tuple[Phase, ...] = ()
    t0: float = 0.0

    def base(self, stream: str) -> FaultRates:
        """The steady rates of ``stream`` (a per-stream entry may name it unprefixed)."""
        for name, rates in self.streams.items():
            if stream == name or stream.endswith(":" + name):
                return rates
        return self.default

    def rates_at(self, stream: str, now: float) -> FaultRates:
        """The rates in force for ``stream`` at epoch time ``now`` (later phases win)."""
        rates = self.base(stream)
        offset = now - self.t0
        for phase in self.phases:
            if phase.covers(stream, offset):
                rates = FaultRates.from_dict(phase.rates, rates)
        return rates

    def to_json(self) -> str:
        """Serialise for ``REDRIVE_FAULTS``."""
        return json.dumps(
            {
                "seed": self.seed,
                "t0": self.t0,
                "default": self.default.to_dict(),
                "streams": {k: v.to_dict() for k, v in self.streams.items()},
                "phases": [
                    {
                        "at": p.at,
                        "duration": p.duration,
                        "rates": dict(p.rates),
                        "stream": p.stream,
                        "note": p.note,
                    }
                    for p in self.phases
                ],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> FaultPlan:
        """Parse what :meth:`to_json` wrote (or hand-written JSON of the same shape)."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{ENV_FAULTS} is not JSON: {exc}") from None
        return cls(
            seed=int(data.get("seed", 0)),
            t0=float(data.get("t0", 0.0)),
            default=FaultRates.from_dict(data.get("default", {})),
            streams={k: FaultRates.from_dict(v) for k, v in data.get("streams", {}).items()},
            phases=tuple(Phase(**p) for p in data.get("phases", [])),
        )


def _draw(seed: int, stream: str, msg: Message) -> random.Random:
    return random.Random(f"{seed}:{stream}:{msg.entry_id}:{msg.attempt}")


def inject_faults(
    plan: FaultPlan,
    *,
    salt: str = "",
    clock: Callable[[], float] = time.time,
    on_inject: Callable[[str, str], None] | None = None,
) -> Middleware:
    """Middleware injecting ``plan``'s faults; ``on_inject(stream, kind)`` counts them.

    ``salt`` seeds the per-process crash generator (the simulator passes the worker's
    name and incarnation, so a restarted worker does not repeat its predecessor's draws).
    """

    def wrap(spec: HandlerSpec, call_next: AsyncHandler) -> AsyncHandler:
        crash_rng = random.Random(f"{plan.seed}:crash:{salt}:{spec.stream}")

        async def call(msg: Message) -> Any:
            rates = plan.rates_at(spec.stream, clock())
            if not rates.enabled:
                return await call_next(msg)
            rng = _draw(plan.seed, spec.stream, msg)
            if rates.latency is not None:
                await asyncio.sleep(rates.latency.sample(rng))
            if rates.crash and crash_rng.random() < rates.crash:
                os._exit(CRASH_EXIT_CODE)  # no finally, no flush: a real crash
            kind = _pick(rates, rng.random())
            if kind is None:
                return await call_next(msg)
            if on_inject is not None:
                on_inject(spec.stream, kind)
            raise _ERRORS[kind](f"injected {kind} fault ({msg.stream} {msg.id} #{msg.attempt})")

        return call

    return wrap


_ERRORS: dict[str, type[Exception]] = {
    "transient": InjectedTimeout,
    "permanent": InjectedPermanentError,
    "processing": InjectedProcessingError,
}


def _pick(rates: FaultRates, u: float) -> str | None:
    for kind in ("transient", "permanent", "processing"):
        p: float = getattr(rates, kind)
        if u < p:
            return kind
        u -= p
    return None


def install_from_env(app: App, environ: Mapping[str, str] | None = None) -> FaultPlan | None:
    """If ``REDRIVE_FAULTS`` is set, add the fault middleware to ``app``; return the plan."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_FAULTS)
    if not raw:
        return None
    plan = FaultPlan.from_json(raw)
    app.use(inject_faults(plan, salt=env.get(ENV_SALT, "")))
    return plan
