"""``redrive monitor`` — the live terminal dashboard (``--once``: print one frame)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from redrive.cli.health import warn_problems, window_options, with_window
from redrive.cli.main import CliContext
from redrive.monitoring.dashboard import render
from redrive.monitoring.health import evaluate
from redrive.monitoring.live import monitor_client, take, watch
from redrive.monitoring.thresholds import load_config
from redrive.store.embedded import ensure_url


@click.command()
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Health thresholds for the alerts panel (as for redrive health).",
)
@window_options
@click.pass_obj
def monitor(
    obj: CliContext,
    once: bool,
    interval: float,
    streams: tuple[str, ...],
    config_path: Path | None,
    window: float | None,
    dead_after: float | None,
) -> None:
    """Throughput, errors, lag, pending, retries, DLQ, consumers and alerts, live.

    While Redis is unreachable the dashboard says since when and keeps retrying
    (``--once`` instead fails: one line, exit 2). Never starts the embedded Redis.
    """
    config = with_window(load_config(config_path), window, dead_after)
    url = ensure_url(obj.redis_url, obj.data_dir)
    console = Console()
    with monitor_client(url) as client:
        if once:
            snapshot = take(client, config, streams)
            console.print(render(snapshot, evaluate(snapshot, config)))
            warn_problems(snapshot)
        else:
            watch(client, console, config, streams=streams, interval=interval, url=url)
