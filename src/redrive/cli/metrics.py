"""``redrive metrics`` — a Prometheus endpoint for every stream redrive knows."""

from __future__ import annotations

from wsgiref.simple_server import WSGIRequestHandler, make_server

import click
from prometheus_client import generate_latest, make_wsgi_app

from redrive.cli.main import CliContext
from redrive.monitoring.live import monitor_client, take
from redrive.monitoring.prometheus import ClusterCollector, registry_of
from redrive.monitoring.thresholds import HealthConfig
from redrive.store.embedded import ensure_url


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds would flood stderr; say nothing per request."""


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=9464, show_default=True)
@click.option(
    "--window",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds behind the error-ratio gauge.",
)
@click.option(
    "--dead-after",
    type=click.FloatRange(min=0.001),
    default=60.0,
    show_default=True,
    help="Idle seconds (with entries pending) after which a consumer counts as dead.",
)
@click.option("--once", is_flag=True, help="Print the exposition once to stdout and exit.")
@click.pass_obj
def metrics(
    obj: CliContext, host: str, port: int, window: float, dead_after: float, once: bool
) -> None:
    """Serve /metrics (Prometheus text format), read from Redis on every scrape."""
    url = ensure_url(obj.redis_url, obj.data_dir)
    config = HealthConfig(window_seconds=window, dead_after_seconds=dead_after)
    with monitor_client(url) as client:
        registry = registry_of(ClusterCollector(lambda: take(client, config)))
        if once:
            click.echo(generate_latest(registry).decode(), nl=False)
            return
        server = make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler)
        click.echo(f"serving http://{host}:{server.server_port}/metrics", err=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
