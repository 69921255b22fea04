"""``redrive metrics`` — a Prometheus endpoint for every stream redrive knows."""

from __future__ import annotations

from wsgiref.simple_server import WSGIRequestHandler, make_server

import click
from prometheus_client import generate_latest, make_wsgi_app

from redrive.cli.health import warn_problems, window_options, with_window
from redrive.cli.logs import setup_logging
from redrive.cli.main import CliContext
from redrive.monitoring.live import monitor_client, take
from redrive.monitoring.prometheus import ClusterCollector, registry_of
from redrive.monitoring.thresholds import HealthConfig
from redrive.store.connection import describe_error
from redrive.store.embedded import ensure_url

#: Seconds a scrape waits for Redis: under Prometheus's default scrape timeout (10 s).
SCRAPE_TIMEOUT = 5.0


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds would flood stderr; say nothing per request."""


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=9464, show_default=True)
@window_options
@click.option("--once", is_flag=True, help="Print the exposition once to stdout and exit.")
@click.pass_obj
def metrics(
    obj: CliContext,
    host: str,
    port: int,
    window: float | None,
    dead_after: float | None,
    once: bool,
) -> None:
    """Serve /metrics (Prometheus text format), read from Redis on every scrape.

    Redis is checked at start; while it is unreachable every scrape still answers, with
    ``redrive_up 0``, and one warning is logged per change of state. ``--once`` fails
    instead (one line, exit 2). Never starts the embedded Redis.
    """
    setup_logging(obj.log_format, obj.log_level)
    url = ensure_url(obj.redis_url, obj.data_dir)
    config = with_window(HealthConfig(), window, dead_after)
    with monitor_client(url, timeout=SCRAPE_TIMEOUT) as client:
        if once:
            snapshot = take(client, config)
            registry = registry_of(ClusterCollector(lambda: snapshot))
            click.echo(generate_latest(registry).decode(), nl=False)
            warn_problems(snapshot)
            return
        collector = ClusterCollector(
            lambda: take(client, config), tolerant=True, describe=lambda e: describe_error(e, url)
        )
        registry = registry_of(collector)
        generate_latest(registry)  # the start-up check: logs if Redis is unreachable now
        server = make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler)
        state = "Redis answers" if collector.up else "Redis unreachable: redrive_up 0"
        click.echo(f"serving http://{host}:{server.server_port}/metrics ({state})", err=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
