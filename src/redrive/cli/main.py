"""Entry point of the ``redrive`` command and its global options."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click

from redrive.errors import RedriveError
from redrive.store.embedded import default_data_dir

LOG_FORMATS = ("text", "json")

__all__ = ["CliContext", "cli", "default_data_dir", "main"]


@dataclass(slots=True)
class CliContext:
    """Global options, passed to every subcommand as ``ctx.obj``."""

    redis_url: str | None
    data_dir: Path
    log_format: str
    log_level: str


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--redis-url",
    envvar="REDRIVE_REDIS_URL",
    metavar="URL",
    help="redis://, rediss:// or unix:// URL. Default: the embedded Redis under --data-dir.",
)
@click.option(
    "--data-dir",
    envvar="REDRIVE_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_data_dir,
    show_default="$XDG_DATA_HOME/redrive",
    help="Where the embedded Redis keeps its socket, pid file and AOF.",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="Log lines for people (text) or one JSON object per line (json).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.version_option(package_name="redrive")
@click.pass_context
def cli(
    ctx: click.Context, redis_url: str | None, data_dir: Path, log_format: str, log_level: str
) -> None:
    """redrive — production-grade Redis Streams consumers: retries, dead letters, zero loss."""
    ctx.obj = CliContext(redis_url, data_dir, log_format, log_level)


def _register() -> None:
    from redrive.cli import demo, publish, server, worker

    cli.add_command(server.server)
    cli.add_command(worker.worker)
    cli.add_command(publish.publish)
    cli.add_command(demo.demo)
    from redrive.cli import dlq

    cli.add_command(dlq.dlq)
    from redrive.cli import simulate

    cli.add_command(simulate.simulate)
    from redrive.cli import audit

    cli.add_command(audit.audit)
    from redrive.cli import health, metrics, monitor

    cli.add_command(metrics.metrics)
    cli.add_command(health.health)
    cli.add_command(monitor.monitor)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; library errors become a one-line message and exit code 2."""
    _register()
    try:
        code = cli.main(args=argv, prog_name="redrive", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # One line, not click's usage block: say what was wrong and where to look.
        where = exc.ctx.command_path if exc.ctx else "redrive"
        click.echo(f"Error: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RedriveError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
