"""``redrive dlq list|show|stats|replay|purge|delete|export|import`` — thin over redrive.dlq.

Exit codes: 0 done, 1 nothing matched (or a canary died), 2 bad input or Redis error,
130 a replay interrupted with Ctrl-C. A DLQ of the index that is not a stream is one
warning line on stderr (:func:`_warn`), not a failure. Rendering lives in
:mod:`redrive.cli.dlq_render`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from redrive import dlq as lib
from redrive.cli.dlq_render import (
    check_trace_url,
    emit_json,
    letters,
    print_detail,
    print_import,
    print_list,
    print_replay,
    print_stats,
    trace_links,
)
from redrive.cli.main import CliContext
from redrive.dlq import export_import, query, view
from redrive.dlq.ratelimit import parse_rate
from redrive.errors import ConfigError, StoreError
from redrive.store.connection import describe_error
from redrive.store.embedded import ensure_url

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _run(obj: CliContext, /, work: Callable[[Redis], Awaitable[T]]) -> T:
    url = ensure_url(obj.redis_url, obj.data_dir)

    async def main() -> T:
        try:
            client = lib.connect(url)
            try:
                return await work(client)
            finally:
                await client.aclose()
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreError(describe_error(exc, url)) from exc

    return asyncio.run(main())


def _warn(message: str) -> None:
    """One line on stderr for a DLQ that was skipped (the others are still shown)."""
    click.echo(f"warning: {message}", err=True)


def _nothing(what: str) -> None:
    click.echo(f"nothing matched: no dead letters to {what}", err=True)
    sys.exit(1)


ID_HELP = "A dead letter: STREAM@ID, or an ID found in one DLQ only (repeat)."


def filter_options(fn: F) -> F:
    """The selection options shared by list, stats, replay, purge and export."""
    options = [
        click.argument("streams", nargs=-1, metavar="[STREAM]..."),
        click.option("--id", "ids", multiple=True, metavar="[STREAM@]ID", help=ID_HELP),
        click.option("--reason", help=f"One of {', '.join(query.REASONS)}."),
        click.option("--error-type", help="Exception type, e.g. TimeoutError."),
        click.option("--group", "-g", help="The consumer group that failed it."),
        click.option("--since", metavar="TIME", help=f"Died at or after: {query.TIME_HELP}."),
        click.option("--until", metavar="TIME", help="Died at or before (same forms)."),
        click.option("--older-than", metavar="DURATION", help="Died longer ago (7d, 12h)."),
        click.option("--grep", metavar="REGEX", help="Search the error message."),
        click.option("--fingerprint", metavar="FP", help="Error fingerprint (from stats)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_filter(params: dict[str, Any]) -> lib.Filter:
    """A :class:`~redrive.dlq.Filter` from the shared options (checked before any I/O)."""
    now = int(time.time() * 1000)
    since, until = params.pop("since", None), params.pop("until", None)
    older_than = params.pop("older_than", None)
    bounds = [query.parse_time(until, now, "--until")] if until else []
    if older_than:
        bounds.append(now - query.parse_duration(older_than, "--older-than"))
    return lib.Filter(
        streams=tuple(params.pop("streams", ())),
        ids=tuple(params.pop("ids", ())),
        reason=params.pop("reason", None),
        error_type=params.pop("error_type", None),
        group=params.pop("group", None),
        grep=params.pop("grep", None),
        fingerprint=params.pop("fingerprint", None),
        since_ms=query.parse_time(since, now, "--since") if since else None,
        until_ms=min(bounds) if bounds else None,
    )


def _redact(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


@click.group()
def dlq() -> None:
    """Browse, group, replay, purge and archive dead letters (dlq:{STREAM}).

    Dead letters are named STREAM@ID (ids repeat across streams); tables print that
    form, and every --id and `show` accept it. Exit 1 when nothing matched.

    A dlq:{STREAM} that is not a stream is skipped with a warning on stderr, or, when
    the command names that STREAM, refused (exit 2, nothing read or changed).
    """


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
    """List dead letters of every STREAM (default: all), oldest first.

    A table on a terminal, tab-separated lines when piped, JSON lines with --json.
    """
    flt = build_filter(params)
    page = _run(
        obj, lambda c: lib.list_dead_letters(c, flt, limit=limit, cursor=cursor, on_skip=_warn)
    )
    if not page.entries:
        _nothing("list")
    rows = [
        view.summary(e, redact=_redact(redact), show_payload=show_payload) for e in page.entries
    ]
    if as_json:
        for row in rows:
            emit_json(row)
        return
    print_list(rows)
    if page.cursor:
        click.echo(f"more: --cursor {page.cursor}", err=True)


@dlq.command()
@click.argument("ref", metavar="[STREAM@]ID")
@click.option("--stream", "streams", multiple=True, help="Look only in this stream's DLQ.")
@click.option("--redact", metavar="NAMES", help="Mask these payload fields: card,email.")
@click.option("--show-payload", is_flag=True, help="Whole payload, unmasked.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option("--trace-url", metavar="TEMPLATE", envvar="REDRIVE_TRACE_URL",
              help="Link to the trace, e.g. 'https://tempo.example/trace/{trace_id}' "
                   "(also {span_id}); env REDRIVE_TRACE_URL.")  # fmt: skip
@click.pass_obj
def show(obj: CliContext, /, ref: str, streams: tuple[str, ...], redact: str | None,
         show_payload: bool, as_json: bool, trace_url: str | None) -> None:  # fmt: skip
    """Every field of one dead letter, its trace, attempt history and traceback.

    A bare ID found in several DLQs is refused with the candidates listed: pass
    STREAM@ID or --stream.
    """
    template = check_trace_url(trace_url)
    flt = lib.Filter(streams=streams, ids=(ref,))  # checks the names before any I/O
    [entry] = _run(obj, lambda c: lib.by_ids(c, flt, on_skip=_warn))
    out = view.detail(entry, redact=_redact(redact), show_payload=show_payload)
    trace_links(out, template)
    if as_json:
        emit_json(out)
    else:
        print_detail(out)


@dlq.command()
@filter_options
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_obj
def stats(obj: CliContext, /, top: int, as_json: bool, **params: Any) -> None:
    """Counts per stream, reason, error type and error fingerprint (first/last seen)."""
    flt = build_filter(params)
    result = _run(obj, lambda c: lib.dlq_stats(c, flt, on_skip=_warn))
    if as_json:
        emit_json(result.to_json())
    else:
        print_stats(result, top)
    if not result.total:
        _nothing("count")


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
@click.option("--ignore-idempotency", is_flag=True,
              help="Replay entries whose idempotency key is done (a duplicate succeeded): "
                   "clears the done mark, so the handler runs again.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def replay(obj: CliContext, /, everything: bool, to: str | None, note: str, force: bool,
           max_replays: int, dry_run: bool, rate: str | None, canary: int,
           canary_timeout: float, ignore_idempotency: bool, as_json: bool,
           **params: Any) -> None:  # fmt: skip
    """Replay dead letters: by --id, a filter, --fingerprint or --all.

    Refused (exit 2, nothing moved) when the group that failed them no longer exists,
    unless --to names a stream. Ctrl-C stops between two entries (exit 130); the rest
    stay in the DLQ.

    \b
    Examples:
      redrive dlq replay ecommerce:orders --error-type TimeoutError --rate 50 --canary 5
      redrive dlq replay --id ecommerce:orders@1700000000000-0 --note "fixed in v1.4.2"
    """
    options = lib.ReplayOptions(
        to=to, note=note, force=force, max_replays=max_replays, dry_run=dry_run,
        rate=parse_rate(rate) if rate else None, canary=canary,
        canary_timeout=canary_timeout, everything=everything,
        ignore_idempotency=ignore_idempotency,
    )  # fmt: skip
    flt = build_filter(params)
    with _Bar(as_json or dry_run) as progress:
        report = _run(obj, lambda c: _replay_until_ctrl_c(c, flt, options, progress))
    if not report.planned and not report.refused:
        _nothing("replay")
    print_replay(report, as_json)
    if report.interrupted:
        sys.exit(130)
    if report.stopped or not report.planned:
        sys.exit(1)


async def _replay_until_ctrl_c(
    client: Redis, flt: lib.Filter, options: lib.ReplayOptions, progress: Any
) -> lib.ReplayReport:
    """The first Ctrl-C stops the replay between two entries (and is recorded in the
    audit); a second one aborts at once (the default handler is back)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def first_ctrl_c() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    # Not in the main thread (tests) or no signals here: Ctrl-C aborts as it always did.
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, first_ctrl_c)
    try:
        return await lib.replay(client, flt, options, progress, stop=stop, on_skip=_warn)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


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


@dlq.command()
@filter_options
@click.option("--all", "everything", is_flag=True, help="Every entry of the STREAMs given.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--note", default="", help="Why, for the audit stream.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: what was deleted.")
@click.pass_obj
def purge(obj: CliContext, /, everything: bool, yes: bool, note: str, as_json: bool,
          **params: Any) -> None:  # fmt: skip
    """Delete dead letters (asks first, showing the exact count; every purge is audited)."""
    flt = build_filter(params)
    chosen = _run(obj, lambda c: lib.plan_purge(c, flt, everything=everything, on_skip=_warn))
    if not chosen.count:
        _nothing("purge")
    where = ", ".join(f"{s}: {n}" for s, n in chosen.by_stream().items())
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"would delete {letters(chosen.count)} ({where}): pass --yes")
        click.confirm(f"Delete {letters(chosen.count)} ({where})?", abort=True, err=True)
    deleted = _run(obj, lambda c: lib.purge(c, chosen, note=note, what=flt.describe()))
    if as_json:
        emit_json({"action": "deleted", "count": deleted, "streams": chosen.by_stream()})
    else:
        click.echo(f"deleted {letters(deleted)} ({where})")


dlq.add_command(purge, name="delete")


@dlq.command()
@filter_options
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help="Write to FILE (default: stdout), all or nothing.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite an existing --output FILE.")
@click.pass_obj
def export(obj: CliContext, /, output: Path | None, force: bool, **params: Any) -> None:
    """Write dead letters as JSONL (fields byte-exact, original ids) for `dlq import`.

    With -o FILE the lines go to a temporary file next to FILE, renamed over it only
    once complete; an existing FILE is kept unless --force, and nothing is written
    when nothing matched (exit 1).
    """
    flt = build_filter(params)
    if output == Path("-"):
        output = None  # "-o -": stdout, as click's own file options read it
    if output is not None:
        export_import.check_output(output, force=force)  # before any I/O: fail fast, change nothing
    lines = list(_run(obj, lambda c: lib.export_lines(c, flt, on_skip=_warn)))
    if not lines:
        _nothing("export")
    if output is None:
        for line in lines:
            click.echo(line)
    else:
        export_import.write_lines(output, lines, force=force)
    click.echo(f"exported {letters(len(lines))}", err=True)


@dlq.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--allow-duplicates", is_flag=True,
              help="Import records even if their DLQ already holds them.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per stream, then totals.")
@click.pass_obj
def import_(obj: CliContext, /, file: Any, allow_duplicates: bool, as_json: bool) -> None:
    """Append the dead letters of an export FILE ("-" for stdin) to their DLQs.

    Records already in their DLQ (every field equal) are skipped and counted, so
    importing a file twice imports it once; --allow-duplicates imports them anyway.
    """
    name = getattr(file, "name", "<stdin>")
    records = lib.parse_file(export_import.read_text(file, name), name)
    if not records:
        _nothing("import")
    result = _run(obj, lambda c: lib.import_records(
        c, records, source=name, allow_duplicates=allow_duplicates))  # fmt: skip
    print_import(result, as_json)
