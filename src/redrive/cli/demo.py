"""``redrive demo`` — the e-commerce story on the embedded Redis, ending in ``lost: 0``."""

from __future__ import annotations

import json

import click
import redis
from click.core import ParameterSource
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from redrive.cli.main import CliContext
from redrive.demo import DemoConfig, DemoError, DemoReport, StreamProgress, demo_streams, run_demo
from redrive.demo.run import dashboard_hint
from redrive.demo.slot import DemoSlot
from redrive.store.connection import describe_error, redact_url, sync_client
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
@click.option(
    "--yes",
    is_flag=True,
    help="Run on the server REDRIVE_REDIS_URL names (else refused: use the embedded one).",
)
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
    yes: bool = False,
) -> None:
    """Run the e-commerce story: faults, retries, dead letters, a replay, a reconciliation.

    Runs on the embedded Redis, or on the server --redis-url names. A URL that comes
    only from REDRIVE_REDIS_URL (set for your own app, perhaps) is refused unless --yes.
    Its keys live under its own prefix: streams demo:ecommerce:orders and
    demo:ecommerce:payments (demo2:… while another demo runs on the same server), with
    their retry, DLQ, stats and ledger keys; it deletes only those, and never keys it did
    not create. Exit code 0 when no message was lost, else 1.
    """
    obj: CliContext = ctx.obj
    _refuse_url_from_environment(ctx, yes=yes)
    url = ensure_url(obj.redis_url, obj.data_dir)
    config = DemoConfig(url, total, seed, workers, base_delay, timeout, replay=not no_replay)
    client = sync_client(url)
    try:
        with DemoSlot(client) as slot:
            report = _run(config, slot, as_json=as_json, no_dashboard=no_dashboard)
        if not as_json:
            hint = dashboard_hint(report, obj.redis_url)
            click.echo(f"open the web dashboard on this data: {hint}")
    except (redis.RedisError, OSError) as exc:
        raise DemoError(describe_error(exc, url)) from exc
    finally:
        client.close()
    ctx.exit(0 if report.lost == 0 else 1)


def _refuse_url_from_environment(ctx: click.Context, *, yes: bool) -> None:
    """A URL only in the environment may be the user's own app's server: ask for --yes."""
    parent = ctx.parent
    source = parent.get_parameter_source("redis_url") if parent is not None else None
    if source is ParameterSource.ENVIRONMENT and not yes:
        url = redact_url(str(parent.params["redis_url"])) if parent is not None else "?"
        raise click.UsageError(
            f"REDRIVE_REDIS_URL is set ({url}): the demo would write thousands of messages "
            "there; pass --yes to run it on that server (under demo:* keys only), or unset "
            "REDRIVE_REDIS_URL to use the embedded Redis",
            ctx,
        )


def _run(config: DemoConfig, slot: DemoSlot, *, as_json: bool, no_dashboard: bool) -> DemoReport:
    if as_json:
        report = run_demo(config, slot=slot)
        click.echo(json.dumps(report.to_json()))
        return report
    err = Console(stderr=True)
    err.print(f"[dim]…[/dim] the demo's streams: {slot.prefix}ecommerce:orders, "
              f"{slot.prefix}ecommerce:payments")  # fmt: skip
    if no_dashboard:
        observer = ProgressObserver(err)
        with observer.bars:
            report = run_demo(config, observer, slot)
    else:
        from redrive.monitoring.live import DemoDashboard

        streams = [stream for stream, _ in demo_streams(slot.prefix)]
        with DemoDashboard(err, config.redis_url, streams) as dashboard:
            report = run_demo(config, dashboard, slot)
        if not err.is_terminal:  # rich ends the last frame with a newline only on a terminal
            err.line()
    render(report, Console())
    return report
