"""``redrive publish STREAM`` — publish JSON from ``--data`` or JSON lines from stdin."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from redrive.cli.main import CliContext
from redrive.errors import ConfigError, StoreError
from redrive.runtime import publish as lib
from redrive.store.connection import async_client, check_connection, describe_error
from redrive.store.embedded import ensure_url
from redrive.store.keys import validate_stream_name


@click.command()
@click.argument("stream")
@click.option("--data", metavar="JSON", help="One message body. Without it: JSON lines on stdin.")
@click.option(
    "--maxlen",
    type=click.IntRange(min=1),
    help="Trim the stream to about N entries (MAXLEN ~); unconsumed entries may be dropped.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the number published.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def publish(
    obj: CliContext,
    *,
    stream: str,
    data: str | None,
    maxlen: int | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Publish JSON to STREAM (field ``data``); stdin lines are all checked before any is sent.

    \b
    Examples:
      redrive publish ecommerce:orders --data '{"order_id": "o-1"}'
      cat orders.jsonl | redrive publish ecommerce:orders --quiet
    """
    validate_stream_name(stream)
    if data is not None:
        bodies = [lib.check_json(data, "--data")]
    else:
        stdin = sys.stdin.buffer
        if stdin.isatty():
            raise ConfigError("no --data and stdin is a terminal: pass --data or pipe JSON lines")
        bodies = lib.parse_json_lines(stdin)
    url = ensure_url(obj.redis_url, obj.data_dir)
    check_connection(url)  # a server that is down or refuses us: say so, not "may be published"
    ids = asyncio.run(publish_to(url, stream, bodies, maxlen=maxlen))
    if quiet:
        count = {"stream": stream, "published": len(ids)}
        click.echo(json.dumps(count) if as_json else str(len(ids)))
        return
    for entry_id in ids:
        click.echo(json.dumps({"stream": stream, "id": entry_id}) if as_json else entry_id)


async def publish_to(
    url: str, stream: str, bodies: list[bytes], *, maxlen: int | None
) -> list[str]:
    """Publish through one client opened for this command; a failure is one line."""
    client = async_client(url)
    try:
        return await lib.publish(client, stream, bodies, maxlen=maxlen)
    except lib.PublishError as exc:
        # A chunk may have been partly applied before the failure: say so, never guess.
        cause = exc.__cause__ or exc
        raise StoreError(
            f"{describe_error(cause, url)} ({len(exc.published)} of {exc.total} messages "
            "confirmed; some of the others may be published)"
        ) from exc
    finally:
        await client.aclose()
