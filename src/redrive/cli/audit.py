"""``redrive audit STREAM`` — is every entry of a stream accounted for, right now?"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from redrive.audit import GroupAudit, audit_stream
from redrive.cli.main import CliContext
from redrive.errors import ConfigError
from redrive.store.connection import sync_client
from redrive.store.embedded import ensure_url

PLACES = ("acked", "pending", "unread", "retrying", "dead")


def render(audits: list[GroupAudit], console: Console) -> None:
    """One table row per group, then the problems found."""
    table = Table(title="redrive audit")
    for col in ("stream", "group", "entries", *PLACES, "double-booked", "trimmed pending"):
        table.add_column(col, justify="left" if col in ("stream", "group") else "right")
    for a in audits:
        bad = len(a.trimmed_pending) + len(a.trimmed_retry_pending)
        table.add_row(
            a.stream,
            a.group,
            str(a.entries),
            *(str(a.counts.get(p, 0)) for p in PLACES),
            f"[{'red' if a.double_booked else 'green'}]{len(a.double_booked)}[/]",
            f"[{'red' if bad else 'green'}]{bad}[/]",
        )
    console.print(table)
    for a in audits:
        for entry_id in a.trimmed_pending[:20]:
            console.print(f"[red]trimmed[/] {a.stream} {entry_id}: pending, payload gone (lost)")
        for entry_id in a.double_booked[:20]:
            console.print(f"[red]double-booked[/] {a.stream} {entry_id}")


@click.command()
@click.argument("stream")
@click.option("--group", "-g", metavar="GROUP", help="One consumer group (default: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per group and line.")
@click.pass_context
def audit(ctx: click.Context, stream: str, group: str | None, as_json: bool) -> None:
    """Check that every entry of STREAM is acked, pending, unread, retrying or dead.

    Exit code 0 when conservation holds, 1 when an entry is double-booked or a pending
    entry's payload was trimmed, 2 when the stream or group does not exist.
    """
    obj: CliContext = ctx.obj
    client = sync_client(ensure_url(obj.redis_url, obj.data_dir))
    try:
        audits = audit_stream(client, stream, group)
    finally:
        client.close()
    if not audits:
        raise ConfigError(f"stream {stream!r} has no consumer group to audit")
    if as_json:
        for a in audits:
            click.echo(json.dumps(a.to_json()))
    else:
        render(audits, Console())
    ctx.exit(0 if all(a.ok for a in audits) else 1)
