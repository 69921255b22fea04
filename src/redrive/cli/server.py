"""``redrive server start|stop|status``: the embedded Redis under ``--data-dir``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from redrive.store.embedded import AppendFsync, EmbeddedServer, ServerStatus

if TYPE_CHECKING:
    from redrive.cli.main import CliContext


def _describe(status: ServerStatus) -> str:
    name = f"redis-server {status.version}" if status.version else "redis-server"
    pid = f" (pid {status.pid})" if status.pid else ""
    fsync = f", appendfsync {status.appendfsync}" if status.appendfsync else ""
    return f"{name} running{pid} at {status.url}{fsync}"


def _warn_if_external(obj: CliContext) -> None:
    if obj.redis_url:
        click.echo(
            "note: --redis-url / REDRIVE_REDIS_URL is set, so other commands use that Redis, "
            "not this embedded one",
            err=True,
        )


@click.group()
def server() -> None:
    """Start, stop or inspect the embedded Redis kept under --data-dir."""


@server.command()
@click.option(
    "--appendfsync",
    type=click.Choice(["everysec", "always"]),
    help="AOF fsync policy: 'always' loses nothing acknowledged, 'everysec' is faster. "
    "Applied to a running server too (CONFIG SET). [default: the data dir's last policy, "
    "else everysec]",
)
@click.pass_obj
def start(obj: CliContext, appendfsync: str | None) -> None:
    """Start the embedded Redis (or report the one already running)."""
    policy: AppendFsync | None = None
    if appendfsync is not None:
        policy = "always" if appendfsync == "always" else "everysec"
    embedded = EmbeddedServer(obj.data_dir, appendfsync=policy)
    already = embedded.status().running
    embedded.start()
    line = _describe(embedded.status())
    if embedded.fsync_change is not None:
        before, after = embedded.fsync_change
        line += f" (already running; appendfsync changed from {before} to {after})"
    elif already:
        line += " (already running)"
    click.echo(line)
    _warn_if_external(obj)


@server.command()
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait.")
@click.pass_obj
def stop(obj: CliContext, timeout: float) -> None:
    """Stop the embedded Redis; its append-only file stays in --data-dir."""
    embedded = EmbeddedServer(obj.data_dir)
    pid = embedded.status().pid
    if embedded.stop(timeout=timeout):
        click.echo(f"stopped redis-server (pid {pid})" if pid else "stopped redis-server")
    else:
        click.echo(f"redis-server not running (data dir {embedded.data_dir})")


@server.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a sentence.")
@click.pass_obj
def status(obj: CliContext, as_json: bool) -> None:
    """Show whether the embedded Redis runs; exit 1 if it does not."""
    current = EmbeddedServer(obj.data_dir).status()
    if as_json:
        click.echo(json.dumps(current.to_json(), sort_keys=True))
    elif current.running:
        click.echo(_describe(current))
    else:
        click.echo(f"redis-server not running (data dir {current.data_dir})")
    if not current.running:
        # SystemExit, not ctx.exit(1): main() runs click with standalone_mode=False, where
        # ctx.exit's code is returned by cli.main() instead of reaching the process.
        raise SystemExit(1)
