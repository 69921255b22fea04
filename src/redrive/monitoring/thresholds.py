"""Health thresholds: defaults, and a TOML file that overrides them.

Example file (every key optional)::

    window_seconds = 60          # error rate and DLQ growth look back this far
    dead_after_seconds = 60      # a consumer idle this long with entries pending is dead
    error_rate_min_runs = 20     # fewer handler runs in the window: error rate not judged

    [thresholds]
    dlq_size = { warn = 100, crit = 1000 }
    error_rate = { warn = 0.05, crit = 0.25 }
    open_breakers = { warn = 1 }             # no crit: never CRIT

    [webhook]
    url = "https://hooks.example.com/services/T000/B000/XXXX"
    timeout_seconds = 5
    retries = 3

A value at or above ``warn`` is WARN, at or above ``crit`` is CRIT.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from redrive.errors import ConfigError


class State(StrEnum):
    """Outcome of a check; ``rank`` orders them (the overall state is the worst).

    ``UNKNOWN`` is never the outcome of a check: it is the overall state when nothing
    could be judged (no stream to check, or Redis unreachable), as in Nagios.
    """

    OK = "OK"
    WARN = "WARN"
    CRIT = "CRIT"
    UNKNOWN = "UNKNOWN"

    @property
    def rank(self) -> int:
        """0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN — also the exit code of ``redrive health``."""
        return _RANKS[self]


_RANKS = {State.OK: 0, State.WARN: 1, State.CRIT: 2, State.UNKNOWN: 3}


@dataclass(frozen=True, slots=True)
class Threshold:
    """``warn`` and ``crit`` levels (``None``: that level is never reached)."""

    warn: float | None = None
    crit: float | None = None

    def __post_init__(self) -> None:
        for name in ("warn", "crit"):
            value = getattr(self, name)
            ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
            if not ok or (value is not None and (math.isnan(value) or value < 0)):
                raise ConfigError(f"threshold {name}={value!r}: use a number >= 0")
        if self.warn is not None and self.crit is not None and self.crit < self.warn:
            raise ConfigError(f"threshold crit={self.crit} is below warn={self.warn}")

    def judge(self, value: float) -> State:
        """The state of ``value`` under this threshold."""
        if self.crit is not None and value >= self.crit:
            return State.CRIT
        if self.warn is not None and value >= self.warn:
            return State.WARN
        return State.OK


#: Check name -> default threshold (units: messages, per minute, ratio, seconds, count).
DEFAULTS: dict[str, Threshold] = {
    "dlq_size": Threshold(100, 1000),
    "dlq_growth": Threshold(10, 100),
    "error_rate": Threshold(0.05, 0.25),
    "lag": Threshold(1000, 10000),
    "oldest_pending_age": Threshold(120, 600),
    "dead_consumers": Threshold(1, 3),
    "open_breakers": Threshold(1, None),
}


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where state changes are POSTed (JSON), with a per-attempt timeout and retries."""

    url: str
    timeout_seconds: float = 5.0
    retries: int = 3

    def __post_init__(self) -> None:
        if not self.url.lower().startswith(("http://", "https://")):
            raise ConfigError("webhook url: use an http:// or https:// URL")
        if not self.timeout_seconds > 0 or self.retries < 0:
            raise ConfigError("webhook: timeout_seconds must be > 0 and retries >= 0")


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Everything ``redrive health`` and the dashboard's alerts judge by."""

    thresholds: dict[str, Threshold] = field(default_factory=lambda: dict(DEFAULTS))
    window_seconds: float = 60.0
    dead_after_seconds: float = 60.0
    error_rate_min_runs: int = 20
    webhook: WebhookConfig | None = None

    def __post_init__(self) -> None:
        unknown = set(self.thresholds) - set(DEFAULTS)
        if unknown:
            raise ConfigError(
                f"unknown check {sorted(unknown)[0]!r}: use one of {', '.join(DEFAULTS)}"
            )
        if not self.window_seconds >= 1 or not self.dead_after_seconds > 0:
            raise ConfigError("window_seconds must be >= 1 and dead_after_seconds > 0")

    def threshold(self, check: str) -> Threshold:
        """The threshold of ``check`` (the default unless configured)."""
        return self.thresholds.get(check, DEFAULTS[check])


def load_config(path: Path | None) -> HealthConfig:
    """Read a TOML file (see the module docstring); ``None`` gives the defaults."""
    if path is None:
        return HealthConfig()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return from_mapping(data, source=str(path))


def from_mapping(data: dict[str, Any], *, source: str = "config") -> HealthConfig:
    """Build a :class:`HealthConfig` from parsed TOML, with messages naming the key."""
    known = {"thresholds", "webhook", "window_seconds", "dead_after_seconds",
             "error_rate_min_runs"}  # fmt: skip
    for key in data:
        if key not in known:
            raise ConfigError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    thresholds = dict(DEFAULTS)
    for check, levels in data.get("thresholds", {}).items():
        if not isinstance(levels, dict) or set(levels) - {"warn", "crit"}:
            raise ConfigError(f"{source}: thresholds.{check} takes warn and/or crit")
        if check not in DEFAULTS:
            raise ConfigError(
                f"{source}: unknown check {check!r}: use one of {', '.join(DEFAULTS)}"
            )
        thresholds[check] = Threshold(levels.get("warn"), levels.get("crit"))
    webhook = data.get("webhook")
    overrides = {k: data[k] for k in known - {"thresholds", "webhook"} if k in data}
    try:
        hook = WebhookConfig(**webhook) if isinstance(webhook, dict) else None
        return replace(HealthConfig(thresholds=thresholds, webhook=hook), **overrides)
    except TypeError as exc:  # an unknown key in [webhook]
        raise ConfigError(f"{source}: {exc}") from None
