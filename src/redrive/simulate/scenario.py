"""Scenarios: TOML files describing load, error mix, workers and faults over time.

A scenario is a path or the name of one shipped with redrive (``smoke``,
``flaky-dependency``, ``poison-storm``, ``outage-and-recovery``, ``chaos``,
``exactly-once``). Tables:

- ``[run]``: ``messages``, ``rate`` (messages/s; 0 = as fast as possible), ``workers``,
  ``seed``, ``drain_timeout`` (s), ``batch`` (messages per XADD pipeline);
- ``[handler]``: ``max_retries``, ``base_delay``, ``max_delay`` (s), ``visibility_timeout``
  (s), ``max_deliveries``, ``concurrency``, ``prefetch``, ``max_payload_bytes``,
  ``breaker`` (true/false), ``breaker_open`` (s), ``breaker_threshold`` (ratio),
  ``breaker_window`` and ``breaker_min_calls`` (calls; min_calls <= window),
  ``idempotent`` (true/false: handlers keyed on the original id, whose effect counter is
  applied with the ack — :mod:`redrive.simulate.effects` counts it);
- ``[input]``: weights of each input kind (see :mod:`redrive.simulate.traffic`);
- ``[faults]``: steady injected rates for every stream, ``[faults.streams."<stream>"]``
  per stream (see :mod:`redrive.simulate.faults`);
- ``[[phase]]``: ``at``, ``duration``, optional ``stream`` and ``note``, plus rates that
  apply in that window (a dependency outage);
- ``[[chaos]]``: process and network faults run by the simulator — ``kind`` one of
  :data:`CHAOS_KINDS`, ``at`` (s), ``duration`` (s), ``target`` (worker number, 1-based),
  ``restart`` (``same`` or ``new`` name, for ``kill_worker``), ``delay_ms``
  (``proxy_delay``).

Every value is checked when the file is loaded, by the same constructors the workers
use (:class:`~redrive.core.retry.RetryPolicy`, :class:`~redrive.core.breaker.BreakerPolicy`,
:class:`~redrive.runtime.settings.HandlerSpec`): a bad scenario is refused with the file,
the table and the cause (``redrive simulate`` exits 2) before any process starts.

Example::

    scenario = load_scenario("chaos")
    scenario = scenario.with_overrides(messages=2000, seed=3)
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from redrive.core.breaker import BreakerPolicy
from redrive.core.idempotency import Idempotency
from redrive.core.message import Message
from redrive.core.retry import RetryPolicy
from redrive.errors import ConfigError
from redrive.examples.ecommerce import STREAMS
from redrive.runtime.settings import HandlerSpec
from redrive.simulate.faults import FaultPlan, FaultRates, Phase
from redrive.simulate.traffic import DEFAULT_MIX, check_mix

CHAOS_KINDS = (
    "kill_worker",
    "stop_worker",
    "kill_redis",
    "proxy_reset",
    "proxy_blackhole",
    "proxy_delay",
)
SHIPPED = ("smoke", "flaky-dependency", "poison-storm", "outage-and-recovery", "chaos",
           "exactly-once")  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Load and size of a run."""

    messages: int = 1000
    rate: float = 0.0
    workers: int = 2
    seed: int = 0
    drain_timeout: float = 60.0
    batch: int = 100

    def __post_init__(self) -> None:
        if self.messages < 2 or not 1 <= self.workers <= 32 or self.batch < 1:
            raise ConfigError("[run]: need messages >= 2, 1 <= workers <= 32, batch >= 1")
        if self.rate < 0 or self.drain_timeout <= 0:
            raise ConfigError("[run]: need rate >= 0 and drain_timeout > 0")


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    """Options of the simulated services' handlers (short times suit a simulation)."""

    max_retries: int = 3
    base_delay: float = 0.1
    max_delay: float = 2.0
    visibility_timeout: float = 5.0
    max_deliveries: int = 10
    concurrency: int = 16
    prefetch: int = 50
    max_payload_bytes: int = 65536
    breaker: bool = True
    breaker_open: float = 1.0
    breaker_threshold: float = 0.5
    breaker_window: int = 50
    breaker_min_calls: int = 20
    idempotent: bool = False

    def __post_init__(self) -> None:
        try:
            HandlerSpec("sim:check", "check", _never_called, True, retry=self.retry_policy(),
                        breaker=self.breaker_policy(), **self.spec_options())  # fmt: skip
        except ConfigError as exc:
            raise ConfigError(f"[handler] {exc}") from None

    def retry_policy(self) -> RetryPolicy:
        """The retry policy of both simulated services."""
        return RetryPolicy(
            max_retries=self.max_retries, base_delay=self.base_delay, max_delay=self.max_delay
        )

    def breaker_policy(self) -> BreakerPolicy | None:
        """Their circuit breaker (``None`` when ``breaker = false``)."""
        if not self.breaker:
            return None
        try:
            return BreakerPolicy(
                threshold=self.breaker_threshold,
                window=self.breaker_window,
                min_calls=self.breaker_min_calls,
                open_seconds=self.breaker_open,
            )
        except ConfigError as exc:
            raise ConfigError(
                f"breaker: {exc} (breaker_threshold, breaker_window, breaker_min_calls, "
                "breaker_open)"
            ) from None

    def spec_options(self) -> dict[str, Any]:
        """The :class:`HandlerSpec` fields the scenario sets."""
        return {
            "visibility_timeout": self.visibility_timeout,
            "max_deliveries": self.max_deliveries,
            "prefetch": self.prefetch,
            "max_payload_bytes": self.max_payload_bytes,
            "concurrency": self.concurrency,
            # Keys kept for good: a simulation's server lives only as long as the run, and
            # a TTL would have to outlast the DLQ's retention (unbounded here).
            "idempotency": Idempotency(ttl=None) if self.idempotent else None,
        }


async def _never_called(msg: Message) -> None:
    """The handler of the spec built only to validate ``[handler]``."""


@dataclass(frozen=True, slots=True)
class ChaosFault:
    """One process or network fault at ``at`` seconds, lasting ``duration`` seconds."""

    kind: str
    at: float
    duration: float = 1.0
    target: int = 1
    restart: str = "same"
    delay_ms: float = 100.0

    def __post_init__(self) -> None:
        if self.kind not in CHAOS_KINDS:
            raise ConfigError(f"[[chaos]] kind {self.kind!r}: use one of {', '.join(CHAOS_KINDS)}")
        if self.at < 0 or self.duration < 0 or self.target < 1:
            raise ConfigError(f"[[chaos]] {self.kind}: need at >= 0, duration >= 0, target >= 1")
        if self.restart not in ("same", "new"):
            raise ConfigError(f"[[chaos]] restart {self.restart!r}: use 'same' or 'new'")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole scenario; see the module docstring for the file format."""

    name: str
    description: str = ""
    run: RunSettings = field(default_factory=RunSettings)
    handler: HandlerSettings = field(default_factory=HandlerSettings)
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    faults: FaultPlan = field(default_factory=FaultPlan)
    chaos: tuple[ChaosFault, ...] = ()

    def with_overrides(self, **run: Any) -> Scenario:
        """A copy with ``[run]`` values replaced (``None`` values are ignored)."""
        values = {k: v for k, v in run.items() if v is not None}
        seeded = replace(self.faults, seed=values.get("seed", self.faults.seed))
        return replace(self, run=replace(self.run, **values), faults=seeded)

    def check(self) -> Scenario:
        """Refuse faults that target a worker the run does not have."""
        for fault in self.chaos:
            if fault.target > self.run.workers:
                raise ConfigError(
                    f"[[chaos]] {fault.kind} at {fault.at}s targets worker {fault.target} "
                    f"but the run has {self.run.workers}"
                )
        return self


def scenario_path(name_or_path: str) -> Path:
    """A path as given, or the file of a shipped scenario."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"scenario file {path} does not exist")
        return path
    shipped = resources.files("redrive.simulate") / "scenarios" / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise ConfigError(f"no scenario {name_or_path!r}: use a .toml path or one of {SHIPPED}")
    return Path(str(shipped))


def load_scenario(name_or_path: str) -> Scenario:
    """Read and validate a scenario (a path or a shipped name)."""
    path = scenario_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return parse_scenario(data, default_name=path.stem).check()
    except (ConfigError, TypeError, ValueError) as exc:  # say which file
        raise ConfigError(f"{path}: {exc}") from None


def parse_scenario(data: Mapping[str, Any], *, default_name: str = "scenario") -> Scenario:
    """Build a :class:`Scenario` from a parsed TOML document."""
    unknown = set(data) - {"name", "description", "run", "handler", "input", "faults", "phase",
                           "chaos"}  # fmt: skip
    if unknown:
        raise ConfigError(f"unknown scenario tables {sorted(unknown)}")
    run = _table(RunSettings, data.get("run", {}), "[run]")
    faults = dict(data.get("faults", {}))
    streams = faults.pop("streams", {})
    plan = FaultPlan(
        seed=run.seed,
        default=FaultRates.from_dict(faults),
        streams={k: FaultRates.from_dict(v) for k, v in streams.items()},
        phases=tuple(_phase(p) for p in data.get("phase", [])),
    )
    _check_streams(plan)
    chaos = [_table(ChaosFault, c, "[[chaos]]") for c in data.get("chaos", [])]
    return Scenario(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        run=run,
        handler=_table(HandlerSettings, data.get("handler", {}), "[handler]"),
        mix=check_mix(data["input"]) if "input" in data else dict(DEFAULT_MIX),
        faults=plan,
        chaos=tuple(sorted(chaos, key=lambda c: c.at)),
    )


#: annotation -> (accepted Python types, what to write instead)
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "str": ((str,), "a string"),
    "bool": ((bool,), "true or false"),
}


def _table(kind: type[Any], values: Mapping[str, Any], where: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a table, got {values!r}")
    names = {f.name for f in fields(kind)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}: use {sorted(names)}")
    for f in fields(kind):
        if f.name not in values:
            continue
        value, (allowed, wanted) = values[f.name], _TYPES.get(str(f.type), ((object,), "?"))
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ConfigError(f"{where}: {f.name} = {value!r}: use {wanted}")
    try:
        return kind(**values)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"{where}: {exc}") from None


def _check_streams(plan: FaultPlan) -> None:
    """Fault rates for a stream the simulation does not have would never apply."""
    known = [stream for stream, _ in STREAMS]
    named = [*plan.streams, *(p.stream for p in plan.phases if p.stream is not None)]
    for stream in named:
        if stream not in known:
            raise ConfigError(f"faults for stream {stream!r}: use one of {', '.join(known)}")


def _phase(raw: Mapping[str, Any]) -> Phase:
    meta = {"at", "duration", "stream", "note"}
    rates = {k: v for k, v in raw.items() if k not in meta}
    return Phase(
        at=float(raw.get("at", 0)),
        duration=float(raw.get("duration", 0)),
        rates=rates,
        stream=raw.get("stream"),
        note=str(raw.get("note", "")),
    )
