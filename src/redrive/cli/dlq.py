"""``redrive dlq list|show|stats|replay|purge|delete|export|import`` — thin over redrive.dlq.

Exit codes: 0 done, 1 nothing matched (or a canary died), 2 bad input or Redis error.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from redrive import dlq as lib
from redrive.cli.main import CliContext
from redrive.dlq import view
from redrive.errors import ConfigError, StoreError
from redrive.store.connection import describe_error
from redrive.store.embedded import ensure_url

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _run(obj: CliContext, /, work: Callable[[Redis], Awaitable[T]]) -> T:
    url = ensure_url(obj.redis_url, obj.data_dir)

    async def main() -> T:
        client = lib.connect(url)
        try:
            return await work(client)
        except (RedisError, OSError) as exc:
            raise StoreError(describe_error(exc, url)) from exc
        finally:
            await client.aclose()

    return asyncio.run(main())


def _emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


def _nothing(what: str) -> None:
    click.echo(f"nothing matched: no dead letters to {what}", err=True)
    sys.exit(1)


def filter_options(fn: F) -> F:
    """The selection options shared by list, stats, replay, purge and export."""
    options = [
        click.argument("streams", nargs=-1, metavar="[STREAM]..."),
        click.option("--id", "ids", multiple=True, metavar="ID", help="A dead-letter id (repeat)."),
        click.option("--reason", help="e.g. poison, max_retries_exceeded."),
        click.option("--error-type", help="Exception type, e.g. TimeoutError."),
        click.option("--group", help="The consumer group that failed it."),
        click.option("--since", metavar="TIME", help=f"Died at or after: {lib.query.TIME_HELP}."),
        click.option("--until", metavar="TIME", help="Died at or before (same forms)."),
        click.option("--grep", metavar="REGEX", help="Search the error message."),
        click.option("--fingerprint", metavar="FP", help="Error fingerprint (from stats)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_filter(params: dict[str, Any], *, until_ms: int | None = None) -> lib.Filter:
    """A :class:`~redrive.dlq.Filter` from the shared options (checked before any I/O)."""
    now = int(time.time() * 1000)
    since = params.pop("since", None)
    until = params.pop("until", None)
    return lib.Filter(
        streams=tuple(params.pop("streams", ())),
        ids=tuple(params.pop("ids", ())),
        reason=params.pop("reason", None),
        error_type=params.pop("error_type", None),
        group=params.pop("group", None),
        grep=params.pop("grep", None),
        fingerprint=params.pop("fingerprint", None),
        since_ms=lib.parse_time(since, now, "--since") if since else None,
        until_ms=lib.parse_time(until, now, "--until") if until else until_ms,
    )


def _redact(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


@click.group()
def dlq() -> None:
    """Browse, group, replay, purge and archive dead letters (dlq:{STREAM})."""


@dlq.command("list")
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--cursor", help="Resume after a previous page (printed at its end).")
@click.option("--redact", metavar="NAMES", help="Mask these payload fields: card,email.")
@click.option("--show-payload", is_flag=True, help="Whole payloads, unmasked.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def list_(obj: CliContext, /, limit: int, cursor: str | None, redact: str | None,
          show_payload: bool, as_json: bool, **params: Any) -> None:  # fmt: skip
    """List dead letters of every STREAM (default: all), oldest first."""
    flt = build_filter(params)
    page = _run(obj, lambda c: lib.list_dead_letters(c, flt, limit=limit, cursor=cursor))
    rows = [
        view.summary(e, redact=_redact(redact), show_payload=show_payload) for e in page.entries
    ]
    if as_json:
        for row in rows:
            _emit(row)
        return
    table = Table("id", "stream", "died", "group", "reason", "error", "att", "rep", "payload")
    for r in rows:
        error = f"{r['error_type']}: {r['error_message'][:60]}"
        table.add_row(r["id"], r["stream"], r["dead_at"], r["group"], r["reason"], error,
                      str(r["attempts"]), str(r["replays"]), r["payload"])  # fmt: skip
    Console().print(table)
    if page.cursor:
        click.echo(f"more: --cursor {page.cursor}")


@dlq.command()
@click.argument("entry_id", metavar="ID")
@click.option("--stream", "streams", multiple=True, help="Look only in this stream's DLQ.")
@click.option("--redact", metavar="NAMES", help="Mask these payload fields: card,email.")
@click.option("--show-payload", is_flag=True, help="Whole payload, unmasked.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_obj
def show(obj: CliContext, /, entry_id: str, streams: tuple[str, ...], redact: str | None,
         show_payload: bool, as_json: bool) -> None:  # fmt: skip
    """Every field of one dead letter, its attempt history and its traceback."""
    lib.Filter(streams=streams, ids=(entry_id,))  # checks the names before any I/O
    found = _run(obj, lambda c: lib.find(c, entry_id, streams))
    if not found:
        raise lib.UnknownIdError(f"unknown dead-letter id: {entry_id}")
    for entry in found:
        out = view.detail(entry, redact=_redact(redact), show_payload=show_payload)
        if as_json:
            _emit(out)
            continue
        _print_detail(out)


def _print_detail(out: dict[str, Any]) -> None:
    console = Console()
    console.print(f"[bold]{out['stream']} {out['id']}[/] died {out['dead_at']} ({out['reason']})")
    fields = Table("field", "value", show_header=False)
    for name, value in out["fields"]:
        fields.add_row(str(name), json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(fields)
    history = Table("#", "at", "consumer", "error", "message", "ms", title="attempts")
    for item in out["history"]:
        if "replay" in item:
            note = f"replayed by {item.get('by', '?')} from {item.get('from', '?')}"
            history.add_row(f"R{item['replay']}", view.iso(int(item.get("t", 0))), "", "",
                            f"{note} {item.get('note', '')}".strip(), "")  # fmt: skip
            continue
        history.add_row(str(item.get("a", "")), view.iso(int(item.get("t", 0))),
                        str(item.get("c", "")), str(item.get("e", "")), str(item.get("m", "")),
                        str(item.get("d", "")))  # fmt: skip
    console.print(history)
    if out["traceback"]:
        console.print("traceback:", style="bold")
        click.echo(out["traceback"])


@dlq.command()
@filter_options
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_obj
def stats(obj: CliContext, /, top: int, as_json: bool, **params: Any) -> None:
    """Counts per stream, reason, error type and error fingerprint (first/last seen)."""
    flt = build_filter(params)
    result = _run(obj, lambda c: lib.dlq_stats(c, flt))
    if as_json:
        _emit(result.to_json())
        return
    console = Console()
    console.print(f"[bold]{result.total}[/] dead letters")
    for title, counts in (("stream", result.streams), ("reason", result.reasons),
                          ("error type", result.error_types)):  # fmt: skip
        table = Table(title, "count")
        for name, count in counts.most_common(top):
            table.add_row(name, str(count))
        console.print(table)
    fps = Table("fingerprint", "count", "error", "first seen", "last seen", title="fingerprints")
    for fp in result.top_fingerprints()[:top]:
        fps.add_row(fp.fingerprint, str(fp.count), f"{fp.error_type}: {fp.message[:60]}",
                    view.iso(fp.first_ms), view.iso(fp.last_ms))  # fmt: skip
    console.print(fps)


@dlq.command()
@filter_options
@click.option("--all", "everything", is_flag=True, help="Every entry of the STREAMs given.")
@click.option("--to", metavar="STREAM", help="Target stream (default: the group's retry stream).")
@click.option("--note", default="", help="Operator note, kept on the message and in the audit.")
@click.option("--force", is_flag=True, help="Replay even entries the loop guard refuses.")
@click.option("--max-replays", type=click.IntRange(min=1), default=3, show_default=True,
              help="Loop guard: refuse entries replayed this often.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print what would move; change nothing.")
@click.option("--rate", metavar="N/s", help="At most N entries per second (token bucket).")
@click.option(
    "--canary", type=click.IntRange(min=0), default=0, help="Replay K first; stop if one dies."
)
@click.option("--canary-timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def replay(obj: CliContext, /, everything: bool, to: str | None, note: str, force: bool,
           max_replays: int, dry_run: bool, rate: str | None, canary: int,
           canary_timeout: float, as_json: bool, **params: Any) -> None:  # fmt: skip
    """Replay dead letters: by --id, a filter, --fingerprint or --all.

    \b
    Examples:
      redrive dlq replay ecommerce:orders --error-type TimeoutError --rate 50 --canary 5
      redrive dlq replay --id 1700000000000-0 --note "fixed in v1.4.2"
    """
    options = lib.ReplayOptions(
        to=to, note=note, force=force, max_replays=max_replays, dry_run=dry_run,
        rate=lib.parse_rate(rate) if rate else None, canary=canary,
        canary_timeout=canary_timeout, everything=everything,
    )  # fmt: skip
    flt = build_filter(params)
    with _progress(as_json or dry_run) as progress:
        report = _run(obj, lambda c: lib.replay(c, flt, options, progress))
    if not report.planned and not report.refused:
        _nothing("replay")
    _render_replay(report, as_json)
    if report.stopped or not report.planned:
        sys.exit(1)


class _Bar:
    """A rich progress bar on stderr (silent when not wanted), as a context manager."""

    def __init__(self, quiet: bool) -> None:
        console = Console(stderr=True)
        self.progress = None if quiet or not console.is_terminal else Progress(
            *Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=console, transient=True,
        )  # fmt: skip
        self.task: Any = None

    def __enter__(self) -> Callable[[int, int], None] | None:
        if self.progress is None:
            return None
        self.progress.start()
        self.task = self.progress.add_task("replaying", total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _progress(quiet: bool) -> _Bar:
    return _Bar(quiet)


def _render_replay(report: lib.ReplayReport, as_json: bool) -> None:
    verb = "would replay" if report.dry_run else "replayed"
    if as_json:
        rows = [{"id": e.id, "stream": e.stream, "target": t, "action": verb}
                for e, t in report.planned] if report.dry_run else [
                {"id": m.dlq_id, "stream": m.stream, "target": m.target,
                 "target_id": m.target_id, "action": verb} for m in report.moved]  # fmt: skip
        rows += [{"id": e.id, "stream": e.stream, "action": "refused", "why": why}
                 for e, why in report.refused]  # fmt: skip
        for row in rows:
            _emit(row)
        _emit({"summary": verb, "count": len(rows) - len(report.refused),
               "refused": len(report.refused), "gone": len(report.gone),
               "stopped": report.stopped or None, "op": report.op or None})  # fmt: skip
        return
    if report.dry_run:
        for entry, target in report.planned:
            click.echo(f"would replay {entry.stream} {entry.id} -> {target}")
    for entry, why in report.refused:
        click.echo(f"refused {entry.stream} {entry.id}: {why}")
    count = len(report.planned) if report.dry_run else len(report.moved)
    click.echo(f"{verb} {count}, refused {len(report.refused)}"
               + (f", already gone {len(report.gone)}" if report.gone else ""))  # fmt: skip
    if report.stopped:
        click.echo(f"stopped: {report.stopped}", err=True)


@dlq.command()
@filter_options
@click.option("--all", "everything", is_flag=True, help="Every entry of the STREAMs given.")
@click.option("--older-than", metavar="DURATION", help="Died longer ago than this (7d, 12h).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--note", default="", help="Why, for the audit stream.")
@click.pass_obj
def purge(obj: CliContext, /, everything: bool, older_than: str | None, yes: bool, note: str,
          **params: Any) -> None:  # fmt: skip
    """Delete dead letters (asks first, showing the exact count; every purge is audited)."""
    cutoff = None
    if older_than:
        cutoff = int(time.time() * 1000) - lib.parse_duration(older_than, "--older-than")
    flt = build_filter(params, until_ms=cutoff)
    chosen = _run(obj, lambda c: lib.plan_purge(c, flt, everything=everything))
    if not chosen.count:
        _nothing("purge")
    where = ", ".join(f"{s}: {n}" for s, n in chosen.by_stream().items())
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"would delete {chosen.count} dead letters ({where}): pass --yes")
        click.confirm(f"Delete {chosen.count} dead letters ({where})?", abort=True)
    deleted = _run(obj, lambda c: lib.purge(c, chosen, note=note, what=flt.describe()))
    click.echo(f"deleted {deleted} dead letters ({where})")


dlq.add_command(purge, name="delete")


@dlq.command()
@filter_options
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE (default: stdout).")  # fmt: skip
@click.pass_obj
def export(obj: CliContext, /, output: Path | None, **params: Any) -> None:
    """Write dead letters as JSONL (fields byte-exact, originals ids) for `dlq import`."""
    flt = build_filter(params)
    lines = _run(obj, lambda c: lib.export_lines(c, flt))
    count = 0
    with click.open_file(str(output) if output else "-", "w", encoding="utf-8") as out:
        for line in lines:
            out.write(line + "\n")
            count += 1
    click.echo(f"exported {count} dead letters", err=True)


@dlq.command("import")
@click.argument("file", type=click.File("rb"))
@click.pass_obj
def import_(obj: CliContext, /, file: Any) -> None:
    """Append the dead letters of an export FILE ("-" for stdin) to their DLQs."""
    name = getattr(file, "name", "<stdin>")
    records = lib.parse_file(lib.export_import.read_text(file, name), name)
    if not records:
        _nothing("import")
    counts = _run(obj, lambda c: lib.import_records(c, records, source=name))
    for stream, count in counts.items():
        click.echo(f"imported {count} dead letters into {stream}")
