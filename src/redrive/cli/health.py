"""``redrive health`` — thresholds → OK / WARN / CRIT, exit 0 / 1 / 2; alerts on changes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from redrive.cli.logs import setup_logging
from redrive.cli.main import CliContext
from redrive.monitoring.alerts import announce, record_changes
from redrive.monitoring.health import HealthReport, evaluate
from redrive.monitoring.live import monitor_client, take
from redrive.monitoring.thresholds import WebhookConfig, load_config
from redrive.store.embedded import ensure_url

STYLES = {"OK": "green", "WARN": "yellow", "CRIT": "bold red"}


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="TOML file of thresholds and the webhook (see docs/monitoring.md).",
)
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option("--webhook", metavar="URL", help="POST each state change here (JSON).")
@click.option("--no-alerts", is_flag=True, help="Judge only: do not persist states or alert.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: state and checks.")
@click.pass_obj
def health(
    obj: CliContext,
    config_path: Path | None,
    streams: tuple[str, ...],
    webhook: str | None,
    no_alerts: bool,
    as_json: bool,
) -> None:
    """Judge every stream against thresholds; exit 0 (OK), 1 (WARN) or 2 (CRIT).

    A check whose state changed since the previous run is logged and, with a webhook,
    POSTed once (states are kept in Redis, so repeated runs alert once per change).
    """
    setup_logging(obj.log_format, obj.log_level)
    config = load_config(config_path)
    if webhook:
        config = replace(config, webhook=WebhookConfig(webhook))
    url = ensure_url(obj.redis_url, obj.data_dir)
    with monitor_client(url) as client:
        report = evaluate(take(client, config, streams), config)
        if not no_alerts:
            announce(record_changes(client, report), report, config.webhook)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        _render(report, Console())
    raise click.exceptions.Exit(report.exit_code)


def _render(report: HealthReport, console: Console) -> None:
    table = Table(title=f"redrive health: {report.state.value}", title_justify="left")
    for name in ("state", "check", "subject", "detail"):
        table.add_column(name)
    for r in sorted(report.results, key=lambda r: (-r.state.rank, r.subject, r.check)):
        style = STYLES[r.state.value]
        table.add_row(f"[{style}]{r.state.value}[/]", r.check, r.subject, r.message)
    console.print(table)
    if not report.results:
        console.print("no streams to check yet (none has had a worker)")


__all__ = ["health"]
