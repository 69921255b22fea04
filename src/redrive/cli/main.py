"""Entry point of the ``redrive`` command, its global options and its exit codes.

Every failure of every command ends here as one line on stderr and a documented exit
code (docs/operations.md, "Exit codes"): 2 for usage, configuration and Redis errors,
3 (UNKNOWN, the Nagios convention) for all of them under ``redrive health``, whose 1 and 2
mean WARN and CRIT. No traceback reaches the terminal unless ``--log-level debug``.

Read-only commands (:data:`READ_ONLY`) never start the embedded Redis: with no URL they
read it only if it already runs (:func:`redrive.store.embedded.running_url`).
"""

from __future__ import annotations

import functools
import importlib
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from redis import exceptions as rex

from redrive.errors import RedriveError
from redrive.store.connection import describe_error
from redrive.store.embedded import default_data_dir, running_url

LOG_FORMATS = ("text", "json")

#: Exit codes (docs/operations.md keeps the table; tests/integration/test_cli_failures.py
#: checks the two agree).
EXIT_OK, EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_UNKNOWN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: Commands that only read: they never start the embedded Redis.
READ_ONLY = (
    "health", "monitor", "metrics", "audit", "dlq list", "dlq show", "dlq stats", "dlq export",
)  # fmt: skip

#: Commands whose errors are UNKNOWN (exit 3): their 1 and 2 mean WARN and CRIT.
PROBES = ("health",)

_STORE_FAILURES = (rex.RedisError, rex.RedisClusterException)

__all__ = ["READ_ONLY", "CliContext", "cli", "default_data_dir", "main"]


@dataclass(slots=True)
class CliContext:
    """Global options, passed to every subcommand as ``ctx.obj``.

    ``command`` is the subcommand being run (``"health"``); ``redis_url`` is the URL
    given, or for read-only commands the running embedded server's once resolved.
    """

    redis_url: str | None
    data_dir: Path
    log_format: str
    log_level: str
    command: str = ""

    @property
    def error_code(self) -> int:
        """The exit code of a failure of this command (3 for probes, else 2)."""
        return EXIT_UNKNOWN if self.command in PROBES else EXIT_ERROR


#: Every subcommand and where it lives, imported only when it runs or ``--help`` lists it:
#: ``redrive worker`` pays for the worker alone, not for the simulator, the dashboard or
#: the DLQ tools (start-up time, issue 12).
SUBCOMMANDS = {
    "server": "redrive.cli.server:server",
    "worker": "redrive.cli.worker:worker",
    "publish": "redrive.cli.publish:publish",
    "demo": "redrive.cli.demo:demo",
    "dlq": "redrive.cli.dlq:dlq",
    "simulate": "redrive.cli.simulate:simulate",
    "audit": "redrive.cli.audit:audit",
    "metrics": "redrive.cli.metrics:metrics",
    "health": "redrive.cli.health:health",
    "monitor": "redrive.cli.monitor:monitor",
    "dashboard": "redrive.cli.dashboard:dashboard",
}


class LazyGroup(click.Group):
    """A group whose subcommands (:data:`SUBCOMMANDS`) are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in SUBCOMMANDS:
            module, _, attr = SUBCOMMANDS[cmd_name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
            _mark_read_only(cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in SUBCOMMANDS and args[0] not in self.commands:
            # Not a command: load them all, so click's "Did you mean 'worker'?" still
            # chooses among every command, not only those loaded so far.
            for name in SUBCOMMANDS:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--redis-url",
    envvar="REDRIVE_REDIS_URL",
    metavar="URL",
    help="redis://host:6379/0, rediss://…, unix:///path.sock, or a Redis Cluster: "
    "redis+cluster://host:7000 (rediss+cluster:// for TLS; several seed nodes: "
    "redis+cluster://h1:7000,h2:7001). Default: the embedded Redis under --data-dir "
    "(read-only commands never start it).",
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
    help="debug also prints the traceback of an unexpected error.",
)
@click.version_option(package_name="redrive")
@click.pass_context
def cli(
    ctx: click.Context, redis_url: str | None, data_dir: Path, log_format: str, log_level: str
) -> None:
    """redrive — production-grade Redis Streams consumers: retries, dead letters, zero loss."""
    obj = ctx.obj if isinstance(ctx.obj, CliContext) else CliContext(None, data_dir, "", "")
    obj.redis_url, obj.data_dir = redis_url, data_dir
    obj.log_format, obj.log_level = log_format, log_level
    obj.command = ctx.invoked_subcommand or ""
    ctx.obj = obj


def _register() -> None:
    """Import every subcommand now (tests and doc checks that walk ``cli.commands``)."""
    for name in SUBCOMMANDS:
        cli.get_command(click.Context(cli), name)


def _mark_read_only(name: str) -> None:
    for path in READ_ONLY:
        if path.split()[0] == name:
            _never_start_redis(path)


def _never_start_redis(path: str) -> None:
    """Resolve the URL of ``path``'s command before it runs, without starting a server."""
    command: click.Command | None = cli
    for name in path.split():
        command = command.commands.get(name) if isinstance(command, click.Group) else None
    callback = command.callback if command is not None else None
    if command is None or callback is None or getattr(callback, "_read_only", False):
        return

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        obj = click.get_current_context().find_object(CliContext)
        if obj is not None:
            obj.redis_url = running_url(obj.redis_url, obj.data_dir)
        return callback(*args, **kwargs)

    run._read_only = True  # type: ignore[attr-defined]
    command.callback = run


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure becomes one line on stderr and a documented exit code."""
    obj = CliContext(None, default_data_dir(), "text", "info")
    try:
        code = cli.main(args=argv, prog_name="redrive", standalone_mode=False, obj=obj)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_CHECK_FAILED)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except click.UsageError as exc:
        # One line, not click's usage block: say what was wrong and where to look.
        where = exc.ctx.command_path if exc.ctx else "redrive"
        probe = where.split()[1:2] == ["health"]
        _fail(f"{exc.format_message()} (see '{where} --help')", EXIT_UNKNOWN if probe else 2)
    except Exception as exc:  # the one place where every failure is worded
        _fail(_describe(exc, obj), obj.error_code)
    sys.exit(code if isinstance(code, int) else 0)


def _describe(exc: BaseException, obj: CliContext) -> str:
    """One line saying what failed and what to do about it."""
    if isinstance(exc, click.ClickException):
        return exc.format_message()
    if isinstance(exc, RedriveError):
        return str(exc)
    where = obj.redis_url or f"the embedded Redis under {obj.data_dir}"
    if isinstance(exc, _STORE_FAILURES):
        return describe_error(exc, where)
    if isinstance(exc, OSError) and exc.filename is not None:
        return (
            f"cannot open {exc.filename}: {exc.strerror or exc} (check that the path and "
            "its directory exist and that you may write there)"
        )
    if isinstance(exc, OSError):
        return describe_error(exc, where)
    if obj.log_level == "debug":
        traceback.print_exc()
    first = (str(exc).strip().splitlines() or [""])[0]
    return (
        f"unexpected {type(exc).__name__}: {first} (a bug in redrive: rerun with "
        "--log-level debug for the traceback and report it)"
    )


def _fail(message: str, code: int) -> None:
    click.echo(f"{'UNKNOWN' if code == EXIT_UNKNOWN else 'Error'}: {message}", err=True)
    sys.exit(code)
