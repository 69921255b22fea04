"""Tables that never cut an id or a time: rich on a terminal, tab-separated lines in a pipe.

An operator copies ids and times from one command into the next, so those cells are
*kept* (never wrapped, never shortened); long free text (errors, payloads) wraps instead.
A terminal too narrow for the kept cells gets a table wider than itself (the terminal
wraps the lines) rather than a cut id. When stdout is not a terminal, every table is
printed as plain lines, cells separated by tabs (tabs and newlines inside a cell written
as ``\\t`` and ``\\n``), first line the header, so ``cut -f1`` works.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import click
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

Cell = str | Text
WRAP_MIN = 14  # the narrowest a wrapping column gets


@dataclass(frozen=True, slots=True)
class Col:
    """One column: ``keep`` cells are never wrapped or cut; ``right`` for numbers."""

    name: str
    keep: bool = True
    right: bool = False


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal (really: FORCE_COLOR in a CI does not make a pipe one)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def plain(cell: Cell) -> str:
    """A cell as one tab-free line of text (markup removed)."""
    text = cell.plain if isinstance(cell, Text) else cell
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def emit(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], *, title: str = "") -> None:
    """Print ``rows`` under ``cols``: a rich table on a terminal, else tab-separated lines."""
    if not stdout_is_terminal():
        for row in [[c.name for c in cols], *rows]:
            click.echo("\t".join(plain(cell) for cell in row))
        return
    widths = [_widest(c, [row[i] for row in rows]) for i, c in enumerate(cols)]
    table = Table(
        *(
            Column(c.name, no_wrap=c.keep, min_width=w, overflow="fold",
                   justify="right" if c.right else "left")
            for c, w in zip(cols, widths, strict=True)
        ),
        title=title or None,
    )  # fmt: skip
    for row in rows:
        table.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in row))
    console = Console()
    needed = sum(w + 3 for w in widths) + 1  # a space either side and a border per column
    if console.width < needed:
        console = Console(width=needed)
    console.print(table)


def _widest(col: Col, cells: Sequence[Cell]) -> int:
    header = len(col.name)
    if not col.keep:
        return max(header, WRAP_MIN)
    return max([header, *(len(plain(cell)) for cell in cells)])
