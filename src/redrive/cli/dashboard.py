"""``redrive dashboard`` — the web console, secure by default (docs/dashboard.md).

Parses the options, builds the app of :mod:`redrive.web` and serves it with uvicorn.
The web packages are an extra: without them this prints one line saying how to install.
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from redrive.cli.health import window_options, with_window
from redrive.cli.main import CliContext
from redrive.monitoring.thresholds import load_config
from redrive.store.connection import check_connection
from redrive.store.embedded import ensure_url

INSTALL = "pip install 'redrive[web]'"
EVERYWHERE = ("0.0.0.0", "::")


def _url_host(host: str) -> str:
    if host in EVERYWHERE:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option("--read-only", is_flag=True, help="Refuse every action (403), show only.")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the login token from this file (first line) instead of a random one.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Another Host name to answer to (behind a proxy, or with --host 0.0.0.0).",
)
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Health thresholds for the alerts (as for redrive health).",
)
@window_options
@click.pass_obj
def dashboard(
    obj: CliContext,
    host: str,
    port: int,
    read_only: bool,
    token_file: Path | None,
    allow_hosts: tuple[str, ...],
    streams: tuple[str, ...],
    config_path: Path | None,
    window: float | None,
    dead_after: float | None,
) -> None:
    """Serve the web console: live health, DLQ triage by failure group, supervised replay.

    Binds 127.0.0.1 and prints a URL with a login token; every action is a POST with a
    CSRF token, audited as dashboard:<token id>. Replays and deletes run as jobs stored
    in Redis, which this process runs (and resumes after a restart).
    """
    web = _web_extra()
    config = with_window(load_config(config_path), window, dead_after)
    url = ensure_url(obj.redis_url, obj.data_dir)
    check_connection(url)
    token = web.read_token_file(str(token_file)) if token_file else web.new_token()
    access = web.Access(token, web.allowed_hosts(host, port, allow_hosts), read_only)
    settings = web.DashboardSettings(
        url, access, config, streams, runner_name=f"dashboard@{socket.gethostname()}:{port}"
    )
    if host in EVERYWHERE:
        click.echo(
            f"warning: --host {host} serves the dashboard on every interface: anyone who "
            "can reach this port and has the token can act on your dead letters; name "
            "this machine with --allow-host NAME (Host check) and prefer a TLS proxy",
            err=True,
        )
    listening = _bind(host, port)  # before the URL is printed: a busy port is one line
    # A token from a file stays out of the terminal (and its scroll-back, and logs).
    shown = f"$(cat {token_file})" if token_file else token
    click.echo(f"redrive dashboard{' (read-only)' if read_only else ''}: open")
    click.echo(f"  http://{_url_host(host)}:{port}/login?token={shown}")
    click.echo(f"actions are audited as {access.by}")
    _serve(web.create_app(settings), listening)


def _web_extra() -> ModuleType:
    """:mod:`redrive.web`, or one line saying how to install what it needs."""
    try:
        import uvicorn  # noqa: F401

        from redrive import web
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs Starlette, Jinja2 and uvicorn ({exc.name} is missing): {INSTALL}"
        ) from None
    return web


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (is another process "
            "using it? choose another --port)"
        ) from None
    return sock


def _serve(app: Any, sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
