"""The docs' commands and snippets work as printed (README.md, docs/*.md, scenarios/README.md).

Three checks, so the pages cannot drift from the code:

- every ``redrive …`` line of every fenced block goes through the real command-line
  parser (subcommands, options, their values), with the commands' bodies replaced by a
  no-op: a renamed option or a removed command fails here;
- every ``python`` block compiles, and the names it imports and the attributes it uses of
  imported modules exist (``from redrive import WorkerOptions``, ``dlq.replay``);
- blocks preceded by an HTML comment ``<!-- doctest: … -->`` run, in order, in one temporary
  directory per page, against a private Redis (``REDRIVE_REDIS_URL``), with ``.venv`` there
  pointing at this interpreter's environment:

  - ``<!-- doctest: file NAME -->``: the block is written to ``NAME``;
  - ``<!-- doctest: sh [embedded] [expect="TEXT"]… [forbid="TEXT"]… -->``: run by
    ``bash -eo pipefail``; it must exit 0, print every ``expect`` and no ``forbid`` (nor a
    traceback, ``NameError`` or ``ImportError``). ``embedded``: with no URL set, on an
    embedded Redis under ``REDRIVE_DATA_DIR``. Background jobs (``… &``) are stopped after;
  - ``<!-- doctest: python [expect="TEXT"]… -->``: run by this Python, same rules.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest

from redrive.store.embedded import EmbeddedServer
from redrive.testing import RedisProcess, available_redis_binaries

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "scenarios/README.md"]
MARKER = re.compile(r"^<!-- doctest: (?P<kind>file|sh|python)\b(?P<args>.*?)-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+)(?P<lang>\S*)")
RUN_TIMEOUT = 60.0
#: A snippet calling something undefined shows up as these, even when a worker retries it.
ALWAYS_FORBIDDEN = ("Traceback (most recent call last)", "NameError", "ImportError")


@dataclass(slots=True)
class Block:
    """One fenced block: where it is, its language, its text and its doctest marker."""

    page: Path
    line: int
    lang: str
    text: str
    kind: str = ""
    name: str = ""
    expect: list[str] = field(default_factory=list)
    forbid: list[str] = field(default_factory=lambda: list(ALWAYS_FORBIDDEN))
    embedded: bool = False

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, with the marker on the line before it (if any)."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(opening["fence"]))
        block = Block(page, i + 1, opening["lang"], "\n".join(lines[i + 1 : end]) + "\n")
        marker = MARKER.match(lines[i - 1]) if i else None
        if marker:
            _apply_marker(block, marker["kind"], marker["args"])
        found.append(block)
        i = end + 1
    return found


def _apply_marker(block: Block, kind: str, args: str) -> None:
    block.kind = kind
    for word in shlex.split(args):
        key, _, value = word.partition("=")
        if kind == "file" and not value:
            block.name = key
        elif key == "expect":
            block.expect.append(value)
        elif key == "forbid":
            block.forbid.append(value)
        elif key == "embedded":
            block.embedded = True
        else:
            raise AssertionError(f"{block.where}: unknown doctest argument {word!r}")


# -- every redrive command line parses ----------------------------------------------------


def command_lines(block: Block) -> Iterator[list[str]]:
    """The argv (after ``redrive``) of each ``redrive …`` line, continuations joined."""
    if any(c in block.text for c in "╭│┃┏"):
        return  # a screen shown as output (the dashboard), not commands
    text = block.text.replace("\\\n", " ")
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue  # not shell (a log line, a TOML value)
        if words and words[0] in ("$", "#"):
            words = words[1:]
        if not words or Path(words[0]).name != "redrive":
            continue
        argv = words[1:]
        for stop in ("&", "|", ">", "&&", ";", "||"):
            if stop in argv:
                argv = argv[: argv.index(stop)]
        yield argv


def _all_commands(command: click.Command) -> Iterator[click.Command]:
    yield command
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from _all_commands(sub)


@pytest.fixture(scope="module")
def parse_only() -> Iterator[click.Group]:
    """The ``redrive`` group with every subcommand's body replaced by a no-op."""
    from redrive.cli import main

    main._register()
    leaves = [c for c in _all_commands(main.cli) if not isinstance(c, click.Group)]
    saved = [(c, c.callback) for c in leaves]
    for command in leaves:
        command.callback = lambda *args, **kwargs: None
    try:
        yield main.cli
    finally:
        for command, callback in saved:
            command.callback = callback


COMMANDS = [
    pytest.param(argv, id=f"{b.where} redrive {' '.join(argv)}"[:120])
    for page in PAGES
    for b in blocks(page)
    for argv in command_lines(b)
]


@pytest.mark.parametrize("argv", COMMANDS)
def test_every_documented_command_parses(parse_only: click.Group, argv: list[str]) -> None:
    try:
        parse_only.main(args=argv, prog_name="redrive", standalone_mode=False)
    except click.BadParameter as exc:
        message = exc.format_message()
        if "does not exist" not in message and "No such file" not in message:  # the reader's file
            raise
    except FileNotFoundError:
        pass  # an input file of the reader's own (click.File opens it while parsing)


def test_the_pages_have_commands_and_runnable_blocks() -> None:
    # The checks above and below must have something to check.
    assert len(COMMANDS) >= 30
    assert len(RUNNABLE) >= 3


# -- every Python block compiles, and what it takes from redrive exists -------------------


PYTHON_BLOCKS = [
    pytest.param(b, id=b.where) for page in PAGES for b in blocks(page) if b.lang == "python"
]


@pytest.mark.parametrize("block", PYTHON_BLOCKS)
def test_python_blocks_compile_and_name_what_exists(block: Block) -> None:
    # Snippets that are not run (they need a server of the reader's) are still checked:
    # they compile (top-level await allowed), and every name they import, and every
    # attribute they use of an imported module, exists.
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT | ast.PyCF_ONLY_AST
    tree = compile(block.text, block.where, "exec", flags=flags)
    modules: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            source = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(source, alias.name, None)
                if value is None:
                    value = importlib.import_module(f"{node.module}.{alias.name}")
                modules[alias.asname or alias.name] = value
        elif isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name] = importlib.import_module(alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = modules.get(node.value.id)
            if isinstance(owner, types.ModuleType):
                assert hasattr(owner, node.attr), f"{block.where}: {node.value.id}.{node.attr}"


# -- marked blocks run --------------------------------------------------------------------


def _runnable(page: Path) -> bool:
    return any(b.kind in ("sh", "python") for b in blocks(page))


RUNNABLE = [pytest.param(p, id=str(p.relative_to(ROOT))) for p in PAGES if _runnable(p)]


@pytest.mark.skipif(not available_redis_binaries(), reason="no redis-server")
@pytest.mark.parametrize("page", RUNNABLE)
def test_marked_blocks_run_as_printed(page: Path, tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(sys.prefix)
    with RedisProcess() as server:
        for block in blocks(page):
            if block.kind == "file":
                (tmp_path / block.name).write_text(block.text)
            elif block.kind in ("sh", "python"):
                if "redis-cli" in block.text and shutil.which("redis-cli") is None:
                    pytest.skip(f"{block.where} needs redis-cli (apt-get install redis-tools)")
                out = _run(block, tmp_path, server.url)
                for text in block.expect:
                    assert text in out, f"{block.where}: {text!r} not in the output:\n{out}"
                for text in block.forbid:
                    assert text not in out, f"{block.where}: {text!r} in the output:\n{out}"


def _run(block: Block, cwd: Path, url: str) -> str:
    env: dict[str, Any] = {
        **os.environ,
        "PATH": f"{cwd / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "REDRIVE_REDIS_URL": url,
        "REDRIVE_DATA_DIR": str(cwd / "data"),
        "COLUMNS": "200",
    }
    embedded = None
    if block.embedded:
        del env["REDRIVE_REDIS_URL"]
        embedded = EmbeddedServer(cwd / "data")
        embedded.start()
    argv = ["bash", "-eo", "pipefail", "-c"] if block.kind == "sh" else [sys.executable, "-c"]
    log = cwd / f"out-{block.line}.txt"  # a file, not a pipe: a background job keeps a pipe open
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*argv, block.text],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its background jobs share its process group
        )
        try:
            proc.wait(timeout=RUN_TIMEOUT)
        finally:
            _stop_group(proc.pid)
            if embedded is not None:
                embedded.stop()
    output = log.read_text()
    assert proc.returncode == 0, f"{block.where} exited {proc.returncode}:\n{output}"
    return output


def _stop_group(pgid: int) -> None:
    """SIGTERM what is left of the block's process group (a worker started with ``&``)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(pgid, signal.SIGKILL)
