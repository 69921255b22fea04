"""``redrive demo`` — the e-commerce story on the embedded Redis, ending in ``lost: 0``."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from redrive.cli.main import CliContext
from redrive.demo import DemoConfig, DemoReport, StreamProgress, run_demo
from redrive.store.embedded import ensure_url

REASONS = ("poison", "permanent_error", "max_retries_exceeded")


class ProgressObserver:
    """Progress bars (settled / produced per stream) on stderr while the demo runs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Progress(
            TextColumn("{task.description:<20}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("settled"),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, TaskID] = {}

    def phase(self, text: str) -> None:
        """Print the step that begins."""
        self.console.print(f"[dim]…[/dim] {text}")

    def progress(self, streams: list[StreamProgress], elapsed: float) -> None:
        """Move the bars."""
        for s in streams:
            if s.stream not in self.tasks:
                self.tasks[s.stream] = self.bars.add_task(s.stream, total=s.produced)
            done = min(s.settled, s.produced)
            self.bars.update(self.tasks[s.stream], completed=done, total=s.produced)


def render(report: DemoReport, console: Console) -> None:
    """The reconciliation table (one column per stream) and a verdict line."""
    reasons = sorted({r for s in report.streams for r in s.dead} | set(REASONS))
    table = Table(title="redrive demo — reconciliation", title_justify="left")
    table.add_column("")
    for s in report.streams:
        table.add_column(s.stream, justify="right")
    rows: list[tuple[str, list[str]]] = [
        ("produced", [str(s.produced) for s in report.streams]),
        ("succeeded", [str(s.succeeded) for s in report.streams]),
        ("retried (retry moves)", [str(s.retried) for s in report.streams]),
        *(
            (f"dead-lettered: {r}", [str(s.dead.get(r, 0)) for s in report.streams])
            for r in reasons
        ),
        ("pending", [str(s.pending) for s in report.streams]),
        ("lost", [_lost(s.lost) for s in report.streams]),
        ("duplicates", [str(s.duplicates) for s in report.streams]),
    ]
    for name, cells in rows:
        ends = ("retried (retry moves)", f"dead-lettered: {reasons[-1]}")
        table.add_row(name, *cells, end_section=name in ends)
    console.print(table)
    plan = "match the plan" if report.matches_plan else "[yellow]differ from the plan[/]"
    verdict = "[bold green]lost: 0[/]" if report.lost == 0 else f"[bold red]lost: {report.lost}[/]"
    replay = f"{report.replayed} replayed after the outage; " if report.replayed else ""
    console.print(f"{verdict} — outcomes {plan}; {replay}{report.seconds:.1f} s")
    if not report.settled:
        console.print("[yellow]the deadline passed before every message settled[/]")


def _lost(count: int) -> str:
    return f"[bold {'green' if count == 0 else 'red'}]{count}[/]"


@click.command()
@click.option(
    "--orders",
    "total",
    type=click.IntRange(min=2),
    default=3000,
    show_default=True,
    help="Messages to publish in total (60% orders, 40% payments).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Traffic and latency seed.")
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option(
    "--base-delay",
    type=click.FloatRange(0, 10),
    default=0.2,
    show_default=True,
    help="Retry base delay in seconds.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=45.0,
    show_default=True,
    help="Seconds to wait for every message to settle.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--no-dashboard", is_flag=True, help="Progress bars instead of the live dashboard.")
@click.option("--no-replay", is_flag=True, help="Skip replaying the gateway outage's dead letters.")
@click.pass_context
def demo(
    ctx: click.Context,
    *,
    total: int,
    seed: int,
    workers: int,
    base_delay: float,
    timeout: float,
    as_json: bool,
    no_dashboard: bool = False,
    no_replay: bool = False,
) -> None:
    """Run the e-commerce story: faults, retries, dead letters, a replay, a reconciliation.

    Deletes and rewrites only its own keys (ecommerce:orders, ecommerce:payments and their
    retry, DLQ, stats and ledger keys). Exit code 0 when no message was lost, else 1.
    """
    obj: CliContext = ctx.obj
    url = ensure_url(obj.redis_url, obj.data_dir)
    config = DemoConfig(url, total, seed, workers, base_delay, timeout, replay=not no_replay)
    if as_json:
        report = run_demo(config)
        click.echo(json.dumps(report.to_json()))
    else:
        console = Console()
        if no_dashboard:
            observer = ProgressObserver(Console(stderr=True))
            with observer.bars:
                report = run_demo(config, observer)
        else:
            from redrive.examples.ecommerce import STREAMS
            from redrive.monitoring.live import DemoDashboard

            streams = [stream for stream, _ in STREAMS]
            with DemoDashboard(Console(stderr=True), url, streams) as dashboard:
                report = run_demo(config, dashboard)
        render(report, console)
    ctx.exit(0 if report.lost == 0 else 1)
