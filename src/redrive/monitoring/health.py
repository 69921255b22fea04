"""Health checks: judge a :class:`Snapshot` against thresholds → OK / WARN / CRIT.

Per stream: ``dlq_size`` (entries in ``dlq:{S}``) and ``dlq_growth`` (dead letters per
minute over the window). Per group: ``error_rate`` (failed / all handler runs over the
window; not judged below ``error_rate_min_runs`` runs), ``lag`` (unknown lag is OK and
says so: it is not 0), ``oldest_pending_age`` (seconds), ``dead_consumers`` and
``open_breakers`` (consumers whose breaker is open or half-open). An index entry that
cannot be read (not a stream, or refused by the ACL) is one WARN check, ``stream_index``,
and the other streams are judged as usual; a stream with no key, no group and no dead
letter (a mistyped ``--stream``) has nothing to judge. The overall state is the worst;
with nothing judged it is UNKNOWN. It is also the exit code of ``redrive health`` (0 OK,
1 WARN, 2 CRIT, 3 UNKNOWN).

Example::

    report = evaluate(collect(client), HealthConfig())
    for result in report.failing():
        print(result.state, result.subject, result.message)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redrive.monitoring.model import GroupSnapshot, Snapshot, StreamSnapshot
from redrive.monitoring.thresholds import HealthConfig, State


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of one stream (``group`` empty) or group."""

    check: str
    stream: str
    group: str
    state: State
    value: float | None
    warn: float | None
    crit: float | None
    message: str

    @property
    def id(self) -> str:
        """Stable identity, the field of its persisted state (``check|stream|group``)."""
        return f"{self.check}|{self.stream}|{self.group}"

    @property
    def subject(self) -> str:
        """``stream`` or ``stream/group`` for people."""
        return f"{self.stream}/{self.group}" if self.group else self.stream

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "check": self.check,
            "stream": self.stream,
            "group": self.group or None,
            "state": self.state.value,
            "value": self.value,
            "warn": self.warn,
            "crit": self.crit,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every check's result; ``state`` is the worst of them (UNKNOWN when there are none:
    a probe that checked nothing must not say OK)."""

    results: tuple[CheckResult, ...]

    @property
    def state(self) -> State:
        """The overall state."""
        return max((r.state for r in self.results), key=lambda s: s.rank, default=State.UNKNOWN)

    @property
    def exit_code(self) -> int:
        """0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN (Nagios and Kubernetes probes read this)."""
        return self.state.rank

    def failing(self) -> list[CheckResult]:
        """Results that are not OK, worst first."""
        return sorted(
            (r for r in self.results if r.state is not State.OK), key=lambda r: -r.state.rank
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: overall state and every check."""
        return {"state": self.state.value, "checks": [r.to_json() for r in self.results]}


def evaluate(snapshot: Snapshot, config: HealthConfig) -> HealthReport:
    """Judge every stream and group of ``snapshot``."""
    results: list[CheckResult] = []
    for stream in snapshot.streams:
        if _absent(stream):
            continue  # no key, no group, no dead letter: nothing there to judge
        results.extend(_stream_checks(stream, config))
        for group in stream.groups:
            results.extend(_group_checks(group, config))
    return HealthReport(tuple(results))


def _absent(s: StreamSnapshot) -> bool:
    return s.problem is None and s.length is None and not s.groups and not s.dlq_length


def _judge(
    config: HealthConfig, check: str, stream: str, group: str, value: float | None, text: str
) -> CheckResult:
    limit = config.threshold(check)
    state = State.OK if value is None else limit.judge(value)
    return CheckResult(check, stream, group, state, value, limit.warn, limit.crit, text)


def _stream_checks(s: StreamSnapshot, config: HealthConfig) -> list[CheckResult]:
    if s.problem is not None:
        return [CheckResult("stream_index", s.stream, "", State.WARN, None, None, None, s.problem)]
    window = config.window_seconds
    return [
        _judge(config, "dlq_size", s.stream, "", s.dlq_length, f"{s.dlq_length} dead letters"),
        _judge(config, "dlq_growth", s.stream, "", s.dlq_growth_per_minute,
               f"{s.dlq_growth_per_minute:.1f} dead letters/min over {window:g} s"),
    ]  # fmt: skip


def _group_checks(g: GroupSnapshot, config: HealthConfig) -> list[CheckResult]:
    stream, group = g.stream, g.group
    runs, rate = g.window.handler_runs, g.window.error_rate
    judged_rate = rate if runs >= config.error_rate_min_runs else None
    rate_text = (
        f"{rate:.1%} of {runs} runs failed over {config.window_seconds:g} s"
        if rate is not None
        else "no handler runs in the window"
    )
    if rate is not None and judged_rate is None:
        rate_text += f" (not judged below {config.error_rate_min_runs} runs)"
    age = None if g.oldest_pending_idle_ms is None else g.oldest_pending_idle_ms / 1000
    dead = [c.name for c in g.dead_consumers]
    return [
        _judge(config, "error_rate", stream, group, judged_rate, rate_text),
        _judge(config, "lag", stream, group, g.lag,
               "lag unknown (Redis 6.2 or not computable)" if g.lag is None
               else f"{g.lag} entries not yet delivered"),
        _judge(config, "oldest_pending_age", stream, group, age,
               "nothing pending" if age is None else f"oldest pending entry idle {age:.0f} s"),
        _judge(config, "dead_consumers", stream, group, len(dead),
               f"dead: {', '.join(dead)}" if dead else "no dead consumers"),
        _judge(config, "open_breakers", stream, group, len(g.open_breakers),
               f"open: {', '.join(g.open_breakers)}" if g.open_breakers else "breakers closed"),
    ]  # fmt: skip
