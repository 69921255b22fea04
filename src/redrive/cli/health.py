"""``redrive health`` — thresholds → OK / WARN / CRIT / UNKNOWN, exit 0 / 1 / 2 / 3."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from redrive.cli.logs import setup_logging
from redrive.cli.main import CliContext
from redrive.monitoring.alerts import announce, record_changes
from redrive.monitoring.health import HealthReport, evaluate
from redrive.monitoring.live import monitor_client, take
from redrive.monitoring.model import Snapshot
from redrive.monitoring.thresholds import HealthConfig, WebhookConfig, load_config
from redrive.store.connection import redact_url
from redrive.store.embedded import ensure_url

STYLES = {"OK": "green", "WARN": "yellow", "CRIT": "bold red", "UNKNOWN": "bold magenta"}
F = TypeVar("F", bound=Callable[..., Any])


def window_options(fn: F) -> F:
    """``--window`` and ``--dead-after``, shared by health, monitor and metrics."""
    fn = click.option(
        "--dead-after",
        type=click.FloatRange(min=0.001),
        help="Idle seconds (with entries pending) after which a consumer counts as dead "
        "[default: 60, or dead_after_seconds of a --config file].",
    )(fn)
    return click.option(
        "--window",
        type=click.FloatRange(min=1),
        help="Seconds behind the error rate and DLQ growth "
        "[default: 60, or window_seconds of a --config file].",
    )(fn)


def with_window(
    config: HealthConfig, window: float | None, dead_after: float | None
) -> HealthConfig:
    """``config`` with ``--window`` / ``--dead-after`` applied where given."""
    if window is not None:
        config = replace(config, window_seconds=window)
    if dead_after is not None:
        config = replace(config, dead_after_seconds=dead_after)
    return config


def warn_problems(snapshot: Snapshot) -> None:
    """One line on stderr per index entry that could not be read (the rest was judged)."""
    for problem in snapshot.problems():
        click.echo(f"warning: {problem}", err=True)


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
@window_options
@click.pass_obj
def health(
    obj: CliContext,
    config_path: Path | None,
    streams: tuple[str, ...],
    webhook: str | None,
    no_alerts: bool,
    as_json: bool,
    window: float | None,
    dead_after: float | None,
) -> None:
    """Judge every stream against thresholds; exit 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN.

    UNKNOWN (exit 3, the Nagios convention) means nothing could be judged: Redis is
    unreachable, the command was misused, or no stream is known yet (no worker has run
    against this Redis). A check whose state changed since the previous run is logged
    and, with a webhook, POSTed once (states are kept in Redis, so repeated runs alert
    once per change). Never starts the embedded Redis.
    """
    setup_logging(obj.log_format, obj.log_level)
    config = with_window(load_config(config_path), window, dead_after)
    if webhook:
        config = replace(config, webhook=WebhookConfig(webhook))
    url = ensure_url(obj.redis_url, obj.data_dir)
    with monitor_client(url) as client:
        snapshot = take(client, config, streams)
        report = evaluate(snapshot, config)
        if not no_alerts and report.results:
            announce(record_changes(client, report), report, config.webhook)
    warn_problems(snapshot)
    reason = None if report.results else _nothing_to_judge(url, streams)
    if as_json:
        click.echo(json.dumps({**report.to_json(), **({"reason": reason} if reason else {})}))
    else:
        _render(report, Console(), reason)
    raise click.exceptions.Exit(report.exit_code)


def _nothing_to_judge(url: str, streams: tuple[str, ...]) -> str:
    shown, where = redact_url(url), "is --redis-url / REDRIVE_REDIS_URL the right server and db?"
    if streams:
        named = ", ".join(streams)
        return f"nothing named {named} at {shown} (no stream, group or dead letter): {where}"
    return f"no stream to check at {shown}: no worker has run against it yet ({where})"


def _render(report: HealthReport, console: Console, reason: str | None) -> None:
    table = Table(title=f"redrive health: {report.state.value}", title_justify="left")
    for name in ("state", "check", "subject", "detail"):
        table.add_column(name)
    for r in sorted(report.results, key=lambda r: (-r.state.rank, r.subject, r.check)):
        style = STYLES[r.state.value]
        table.add_row(f"[{style}]{r.state.value}[/]", r.check, r.subject, r.message)
    if reason is not None:
        console.print(f"UNKNOWN: {reason}", soft_wrap=True, markup=False, highlight=False)
        return
    console.print(table)


__all__ = ["health"]
