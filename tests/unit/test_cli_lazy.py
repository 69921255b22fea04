"""``redrive worker`` imports the worker path only: the other subcommands load on use."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from redrive.cli import main

#: Imported by other subcommands, never needed to run a worker (start-up time, issue 12).
NOT_ON_THE_WORKER_PATH = (
    "redrive.cli.demo",
    "redrive.cli.dlq",
    "redrive.cli.health",
    "redrive.cli.metrics",
    "redrive.cli.monitor",
    "redrive.cli.simulate",
    "redrive.demo",
    "redrive.dlq",
    "redrive.monitoring",
    "redrive.simulate",
    "redrive.store.binary",
    "redrive.store.server",
    "redrive.verify",
    "rich",
    "prometheus_client",
)

_PROBE = """
import json, sys
from redrive.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
import redrive.runtime.worker  # what App.run imports once the command has parsed
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(*argv: str) -> set[str]:
    """The modules a fresh interpreter holds after ``redrive ARGV`` and the worker runtime."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_worker_command_imports_none_of_the_other_subcommands() -> None:
    modules = imported_by("worker", "--help")
    assert "redrive.cli.worker" in modules
    heavy = [
        m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_ON_THE_WORKER_PATH)
    ]
    assert heavy == []


def test_help_lists_every_subcommand_in_order_and_each_loads_under_its_name() -> None:
    ctx = click.Context(main.cli)
    assert main.cli.list_commands(ctx) == sorted(main.SUBCOMMANDS)
    for name in main.SUBCOMMANDS:
        command = main.cli.get_command(ctx, name)
        assert command is not None and command.name == name


def test_read_only_commands_are_marked_when_they_load() -> None:
    main._register()
    ctx = click.Context(main.cli)
    for path in main.READ_ONLY:
        command: click.Command | None = main.cli
        for word in path.split():
            assert isinstance(command, click.Group)
            command = command.get_command(ctx, word)
        assert command is not None and getattr(command.callback, "_read_only", False), path


def test_a_mistyped_command_is_still_matched_against_every_command() -> None:
    argv = [sys.executable, "-m", "redrive.cli", "wrker", "app:app"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "No such command 'wrker'. Did you mean 'worker'?" in done.stderr
