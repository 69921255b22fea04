"""``redrive simulate SCENARIO`` — faults, load and chaos, ending in a reconciliation."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from redrive.simulate.report import SimulationReport
from redrive.simulate.runner import SimOptions, SimulationInterrupted, run_simulation
from redrive.simulate.scenario import SHIPPED, load_scenario

COUNTERS = ("retried", "breaker_parked", "reclaimed", "fenced")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _red_unless_zero(value: int) -> str:
    return f"[bold {'green' if value == 0 else 'red'}]{value}[/]"


def render(report: SimulationReport, console: Console) -> None:
    """The reconciliation table (one column per stream), faults, and a verdict line."""
    table = Table(title=f"redrive simulate {report.scenario} (seed {report.seed})")
    table.add_column("")
    for s in report.streams:
        table.add_column(s.stream, justify="right")
    reasons = sorted({r for s in report.streams for r in s.dead})
    rows: list[tuple[str, list[str]]] = [
        ("produced", [str(s.produced) for s in report.streams]),
        ("  of which indeterminate, landed", [str(s.indeterminate_landed) for s in report.streams]),
        ("succeeded", [str(s.succeeded) for s in report.streams]),
        *((f"dead: {r}", [str(s.dead.get(r, 0)) for s in report.streams]) for r in reasons),
        ("lost", [_red_unless_zero(len(s.lost)) for s in report.streams]),
        ("duplicates (explained)", [str(len(s.duplicates)) for s in report.streams]),
        ("unexplained duplicates",
         [_red_unless_zero(s.unexplained_duplicates) for s in report.streams]),
        ("re-runs of own finished work",
         [_red_unless_zero(s.rerun_own_finished) for s in report.streams]),
        ("unexpected ids", [_red_unless_zero(len(s.unexpected)) for s in report.streams]),
        ("pending left", [_red_unless_zero(s.pending) for s in report.streams]),
        *((f"workers: {name}", [str(s.counters.get(name, 0)) for s in report.streams])
          for name in COUNTERS),
        ("outcome ≠ plan (by injected faults)",
         [f"{s.mismatched} ({s.mismatched_injected})" for s in report.streams]),
    ]  # fmt: skip
    for name, cells in rows:
        table.add_row(name, *cells)
    console.print(table)
    _render_faults(report, console)
    late = report.lateness()
    final = ", ".join(f"{status} {count}" for status, count in report.producer["final"].items())
    console.print(
        f"producer: {final or 'nothing sent'}; retry lateness p50 {_fmt(late['p50_ms'])} ms, "
        f"p99 {_fmt(late['p99_ms'])} ms over {late['retries']} retries"
    )
    effects = report.effects()
    if effects is not None:  # an idempotent scenario: what took effect, against the runs
        bad = {k: _red_unless_zero(effects[k]) for k in ("double", "missing", "on_dead")}
        console.print(
            f"effects: once {effects['once']}, dead without {effects['dead_without_effect']}, "
            f"double {bad['double']}, missing {bad['missing']}, on dead {bad['on_dead']}; "
            f"messages run more than once {effects['repeated_runs']}, absorbed "
            f"{effects['absorbed']}"
        )
    for s in report.streams:
        for lost in s.lost[:10]:
            console.print(
                f"[red]lost[/] {s.stream} {lost['id']} ({lost['sim_id']}): {lost['where']}"
            )
    verdict = "[bold green]OK[/]" if report.ok else "[bold red]FAILED[/]"
    console.print(
        f"{verdict} — lost {report.lost}, unexplained duplicates "
        f"{report.unexplained_duplicates}, re-runs of own finished work "
        f"{report.rerun_own_finished}, pending {report.pending}; {report.seconds:.1f} s"
    )


def _render_faults(report: SimulationReport, console: Console) -> None:
    recovery = report.recovery()
    if not recovery:
        return
    table = Table(title="faults")
    for col in ("kind", "count", "stranded", "recovery p50 s", "recovery max s", "unrecovered"):
        table.add_column(col, justify="left" if col == "kind" else "right", no_wrap=col == "kind")
    for kind, row in recovery.items():
        table.add_row(
            kind,
            str(row["count"]),
            str(row["stranded"]),
            _fmt(row["recovery_p50_s"]),
            _fmt(row["recovery_max_s"]),
            str(row["unrecovered"]),
        )
    console.print(table)


@click.command()
@click.argument("scenario")
@click.option("--seed", type=int, help="Override the scenario's seed.")
@click.option("--messages", type=click.IntRange(min=2), help="Override the message count.")
@click.option("--rate", type=click.FloatRange(min=0), help="Messages/s (0: as fast as possible).")
@click.option("--workers", type=click.IntRange(1, 32), help="Override the worker count.")
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for the backlog to settle after the load (override).",
)
@click.option("--keep-logs", is_flag=True, help="Keep the workers' logs even when all is well.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_context
def simulate(
    ctx: click.Context,
    scenario: str,
    seed: int | None,
    messages: int | None,
    rate: float | None,
    workers: int | None,
    drain_timeout: float | None,
    keep_logs: bool,
    as_json: bool,
) -> None:
    """Run SCENARIO (a .toml path or a shipped name) and reconcile every message.

    Shipped scenarios: smoke, flaky-dependency, poison-storm, outage-and-recovery, chaos.
    The run uses its own private redis-server (appendfsync always) on a free loopback
    port, never --redis-url. Exit code 0 when nothing was lost, every duplicate is
    explained by a fault and nothing is left pending; 1 if not; 2 for a bad scenario
    (checked before anything starts). Ctrl-C or SIGTERM stops the workers and the
    server and exits 130 or 143.
    """
    loaded = (
        load_scenario(scenario)
        .with_overrides(
            seed=seed, messages=messages, rate=rate, workers=workers, drain_timeout=drain_timeout
        )
        .check()
    )
    err = Console(stderr=True)
    progress = None if as_json else (lambda text: err.print(f"[dim]…[/dim] {text}"))
    try:
        options = SimOptions(keep_logs=keep_logs, progress=progress, stop_on_sigterm=True)
        report = run_simulation(loaded, options)
    except KeyboardInterrupt:
        click.echo("interrupted: stopped the workers and the private redis-server", err=True)
        ctx.exit(130)
    except SimulationInterrupted as exc:
        click.echo(f"interrupted by {exc}", err=True)
        ctx.exit(128 + exc.signum)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        render(report, Console())
    ctx.exit(0 if report.ok else 1)


__all__ = ["SHIPPED", "render", "simulate"]
