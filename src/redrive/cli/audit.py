"""``redrive audit STREAM`` — is every entry of a stream accounted for, right now?"""

from __future__ import annotations

import json

import click
from redis.exceptions import RedisClusterException, RedisError
from rich.text import Text

from redrive.cli.main import CliContext
from redrive.cli.tabular import Cell, Col, emit
from redrive.errors import ConfigError, StoreError
from redrive.store.connection import describe_error, sync_client
from redrive.store.embedded import ensure_url
from redrive.verify.conservation import GroupAudit, audit_stream

PLACES = ("acked", "pending", "unread", "retrying", "dead")
COLS = (Col("stream"), Col("group"), Col("entries", right=True),
        *(Col(p, right=True) for p in PLACES),
        Col("double-booked", right=True), Col("trimmed pending", right=True))  # fmt: skip
SAMPLE = 20


def _flag(count: int) -> Text:
    return Text(str(count), style="red" if count else "green")


def render(audits: list[GroupAudit]) -> None:
    """One row per group (a table, or tab-separated lines when piped), then the problems
    found, each as ``STREAM@ID`` (at most 20 of each kind per group; --json has counts)."""
    rows: list[list[Cell]] = [
        [a.stream, a.group, str(a.entries), *(str(a.counts.get(p, 0)) for p in PLACES),
         _flag(len(a.double_booked)),
         _flag(len(a.trimmed_pending) + len(a.trimmed_retry_pending))]
        for a in audits
    ]  # fmt: skip
    emit(COLS, rows)
    for a in audits:
        for entry_id in a.trimmed_pending[:SAMPLE]:
            click.echo(f"trimmed {a.stream}@{entry_id}: pending, payload gone (lost)")
        for entry_id in a.double_booked[:SAMPLE]:
            click.echo(f"double-booked {a.stream}@{entry_id}")


@click.command()
@click.argument("stream")
@click.option("--group", "-g", metavar="GROUP", help="One consumer group (default: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per group and line.")
@click.pass_context
def audit(ctx: click.Context, stream: str, group: str | None, as_json: bool) -> None:
    """Check that every entry of STREAM is acked, pending, unread, retrying or dead.

    Exit code 0 when conservation holds, 1 when an entry is double-booked or a pending
    entry's payload was trimmed, 2 when the stream or the group (-g) does not exist.
    A table on a terminal, tab-separated lines when piped, JSON lines with --json.
    """
    obj: CliContext = ctx.obj
    url = ensure_url(obj.redis_url, obj.data_dir)
    try:
        client = sync_client(url)  # a cluster client connects here already
        try:
            audits = audit_stream(client, stream, group)
        finally:
            client.close()
    except (RedisError, RedisClusterException, OSError) as exc:
        raise StoreError(describe_error(exc, url)) from exc
    if not audits:
        raise ConfigError(f"stream {stream!r} has no consumer group to audit")
    if as_json:
        for a in audits:
            click.echo(json.dumps(a.to_json()))
    else:
        render(audits)
    ctx.exit(0 if all(a.ok for a in audits) else 1)
