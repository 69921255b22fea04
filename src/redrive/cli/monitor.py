"""``redrive monitor`` — the live terminal dashboard (``--once``: print one frame)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from redrive.cli.main import CliContext
from redrive.monitoring.live import frame, monitor_client, watch
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
@click.pass_obj
def monitor(
    obj: CliContext,
    once: bool,
    interval: float,
    streams: tuple[str, ...],
    config_path: Path | None,
) -> None:
    """Throughput, errors, lag, pending, retries, DLQ, consumers and alerts, live."""
    config = load_config(config_path)
    url = ensure_url(obj.redis_url, obj.data_dir)
    console = Console()
    with monitor_client(url) as client:
        if once:
            console.print(frame(client, config, streams))
        else:
            watch(client, console, config, streams=streams, interval=interval)
