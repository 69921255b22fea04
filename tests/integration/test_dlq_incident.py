"""The DLQ tools during an incident (issue 10): nothing destroyed by mistake, nothing
reported that did not happen, output that can be copied into the next command."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio

from redrive.store import keys
from tests.integration.dlq_support import record, seed
from tests.integration.helpers import until
from tests.integration.test_dlq_cli import cli

SAME_ID = "1700000000000-0"
ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1


async def _twins(r: redis.asyncio.Redis, prefix: str) -> tuple[str, str]:
    """Two DLQs holding a dead letter with the same id, as two streams dying in one ms do."""
    a, b = f"{prefix}orders", f"{prefix}payments"
    for stream in (a, b):
        await r.execute_command("XADD", keys.dlq(stream), SAME_ID, *record(stream, "1-0"))
        await r.sadd(keys.STREAMS_INDEX, stream)
        await r.xgroup_create(stream, "orders", id="0", mkstream=True)
    return a, b


async def test_an_id_in_two_dlqs_is_refused_until_its_stream_is_named(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    a, b = await _twins(aredis, prefix)

    for argv in (["dlq", "show", SAME_ID], ["dlq", "delete", "--id", SAME_ID, "--yes"],
                 ["dlq", "replay", "--id", SAME_ID]):  # fmt: skip
        code, _, err = await cli(redis_url, *argv)
        assert code == 2 and _one_line(err), (argv, err)
        assert f"{a}@{SAME_ID}" in err and f"{b}@{SAME_ID}" in err, "the candidates are listed"
    assert await aredis.xlen(keys.dlq(a)) == await aredis.xlen(keys.dlq(b)) == 1
    assert not await aredis.exists(keys.retry_stream(a, "orders"), keys.retry_stream(b, "orders"))

    code, out, _ = await cli(redis_url, "dlq", "show", f"{a}@{SAME_ID}", "--json")
    assert code == 0 and json.loads(out)["ref"] == f"{a}@{SAME_ID}"
    code, out, _ = await cli(redis_url, "dlq", "show", SAME_ID, "--stream", b, "--json")
    assert code == 0 and json.loads(out)["ref"] == f"{b}@{SAME_ID}", "or name the stream"
    code, out, _ = await cli(redis_url, "dlq", "list", a, "--id", SAME_ID, "--json")
    assert code == 0 and [json.loads(line)["ref"] for line in out.splitlines()] == [
        f"{a}@{SAME_ID}"
    ]
    code, out, err = await cli(redis_url, "dlq", "delete", "--id", f"{a}@{SAME_ID}", "--yes")
    assert code == 0 and out.strip() == f"deleted 1 dead letter ({a}: 1)", (out, err)
    assert (await aredis.xlen(keys.dlq(a)), await aredis.xlen(keys.dlq(b))) == (0, 1)
    code, out, _ = await cli(redis_url, "dlq", "show", SAME_ID, "--json")
    assert code == 0 and json.loads(out)["stream"] == b, "now in one DLQ only: unambiguous"


async def test_listed_ids_are_whole_and_feed_the_next_command(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    a, b = await _twins(aredis, prefix)
    await seed(aredis, a, 2, message="timeout after 3012 ms " * 20)

    code, out, _ = await cli(redis_url, "dlq", "list", a, b)  # stdout is not a terminal
    header, *lines = out.splitlines()
    assert code == 0 and header.split("\t")[:4] == ["id", "died", "group", "reason"]
    rows = [line.split("\t") for line in lines]
    assert all(len(row) == 8 for row in rows), "one entry per line, tab-separated"
    assert [row[0] for row in rows][-1] == f"{b}@{SAME_ID}"
    assert all(ISO_SECONDS.match(row[1]) for row in rows), "times keep their seconds"
    for ref in (row[0] for row in rows):
        code, shown, err = await cli(redis_url, "dlq", "show", ref, "--json")
        assert code == 0 and json.loads(shown)["ref"] == ref, err
    code, out, _ = await cli(redis_url, "dlq", "stats", b, "--json")
    assert [f["sample_ref"] for f in json.loads(out)["fingerprints"]] == [f"{b}@{SAME_ID}"]
    code, out, _ = await cli(redis_url, "dlq", "show", f"{a}@{SAME_ID}")
    attempts = [line.split("\t") for line in out.splitlines() if line.startswith("4\t")]
    assert attempts and ISO_SECONDS.match(attempts[0][1]), out


async def test_a_terminal_table_never_cuts_an_id_or_a_time(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}a-rather-long-stream-name:orders"
    ids = await seed(aredis, stream, 2, message="timeout after 3012 ms " * 5)
    code, text = await asyncio.to_thread(_on_a_terminal, redis_url, "dlq", "list", stream)
    assert code == 0 and "┃" in text, "a rich table, not the pipe format"
    for entry_id in ids:
        assert f"{stream}@{entry_id}" in text
    assert "2023-11-14T22:13:20Z" in text and "…" not in text
    code, text = await asyncio.to_thread(
        _on_a_terminal, redis_url, "dlq", "show", f"{stream}@{ids[0]}"
    )
    assert code == 0 and "2023-11-14T22:13:20Z" in text, "attempts keep their seconds"


def _on_a_terminal(url: str, *argv: str) -> tuple[int, str]:
    """Run ``redrive ARGV`` with a 60-column pseudo-terminal as stdout; (exit code, text)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout is the terminal
        try:
            env = {**os.environ, "COLUMNS": "60", "LINES": "40"}
            os.execve(sys.executable, [sys.executable, "-m", "redrive.cli", "--redis-url", url,
                                       *argv], env)  # fmt: skip
        finally:
            os._exit(127)  # never run the rest of the test suite in the child
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.decode())


async def test_importing_twice_imports_once_unless_duplicates_are_allowed(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, tmp_path: Path
) -> None:
    stream = f"{prefix}orders"
    ids = await seed(aredis, stream, 3)
    archive = tmp_path / "dlq.jsonl"
    code, _, _ = await cli(redis_url, "dlq", "export", stream, "-o", str(archive))
    assert code == 0

    code, out, _ = await cli(redis_url, "dlq", "import", str(archive))
    assert code == 0 and out.splitlines()[-1].startswith("imported 0, 3 already present")
    assert await aredis.xlen(keys.dlq(stream)) == 3, "nothing doubled"
    await aredis.xdel(keys.dlq(stream), ids[1])
    code, out, _ = await cli(redis_url, "dlq", "import", str(archive), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and rows[-1] == {"summary": "import", "imported": 1, "already_present": 2}
    assert rows[0] == {"stream": stream, "imported": 1, "already_present": 2}
    code, out, _ = await cli(redis_url, "dlq", "import", str(archive), "--allow-duplicates")
    assert code == 0 and "imported 3 dead letters into" in out
    assert await aredis.xlen(keys.dlq(stream)) == 6
    imports = [f for _, f in await aredis.xrange(keys.AUDIT)
               if f[b"action"] == b"import" and f[b"file"] == str(archive).encode()]  # fmt: skip
    assert [(f[b"count"], f[b"already-present"]) for f in imports] == [
        (b"0", b"3"),
        (b"1", b"2"),
        (b"3", b"0"),
    ]


async def test_export_never_clobbers_an_archive(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, tmp_path: Path
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 2)
    archive = tmp_path / "dlq.jsonl"
    archive.write_text("precious\n")

    code, _, err = await cli(redis_url, "dlq", "export", stream, "-o", str(archive))
    assert code == 2 and "--force" in err and _one_line(err)
    code, _, err = await cli(redis_url, "dlq", "export", stream, "--reason", "poison",
                             "-o", str(archive), "--force")  # fmt: skip
    assert code == 1 and "nothing matched" in err
    assert archive.read_text() == "precious\n", "an export of nothing keeps the archive"
    code, _, err = await cli(redis_url, "dlq", "export", stream, "-o", str(archive), "--force")
    assert code == 0 and "exported 2 dead letters" in err
    assert len(archive.read_text().splitlines()) == 2
    assert archive.stat().st_mode & 0o777 == 0o600, "payloads: the owner's only"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dlq.jsonl"], "no temp file left"
    missing = tmp_path / "no" / "such" / "dir" / "x.jsonl"
    code, out, err = await cli(redis_url, "dlq", "export", stream, "-o", str(missing))
    assert code == 2 and "does not exist" in err and _one_line(err) and out == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
async def test_export_to_an_unwritable_directory_is_one_line(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, tmp_path: Path
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 1)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = await cli(redis_url, "dlq", "export", stream, "-o", str(locked / "x.jsonl"))
    assert code == 2 and "not writable" in err and _one_line(err)


async def test_replay_to_a_group_that_is_gone_is_refused_unless_to_names_a_stream(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    ids = await seed(aredis, stream, 2, with_group=False)
    snapshot = await aredis.xrange(keys.dlq(stream))

    for argv in (["--id", ids[0]], ["--all", "--dry-run"]):
        code, out, err = await cli(redis_url, "dlq", "replay", stream, *argv)
        assert code == 2 and "group 'orders'" in err and "--to" in err and _one_line(err), err
    assert await aredis.xrange(keys.dlq(stream)) == snapshot, "nothing left the DLQ"
    assert not await aredis.exists(keys.retry_stream(stream, "orders"))

    code, out, err = await cli(redis_url, "dlq", "replay", stream, "--id", ids[0],
                               "--to", f"{prefix}quarantine")  # fmt: skip
    assert code == 0 and out.startswith("replayed 1"), err
    await aredis.xgroup_create(stream, "orders", id="0", mkstream=True)  # the worker is back
    code, out, err = await cli(redis_url, "dlq", "replay", stream, "--id", ids[1])
    assert code == 0 and out.startswith("replayed 1"), err
    assert await aredis.xlen(keys.retry_stream(stream, "orders")) == 1


async def test_filters_say_what_is_wrong(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    [dead_id] = await seed(aredis, stream, 1)

    code, _, err = await cli(redis_url, "dlq", "list", "--reason", "bogus")
    assert code == 2 and _one_line(err)
    assert "'bogus' is not a dead-letter reason" in err and "max_deliveries_exceeded" in err
    for command in ("replay", "purge", "list"):
        code, _, err = await cli(redis_url, "dlq", command, "--id", dead_id, "--reason", "poison",
                                 "--yes" if command == "purge" else "--json")  # fmt: skip
        assert code == 2 and _one_line(err), (command, err)
        assert "reason is max_retries_exceeded, not --reason poison" in err, err
        assert "unknown" not in err
    code, _, err = await cli(redis_url, "dlq", "replay", "--id", "1-999")
    assert code == 2 and "unknown dead-letter id" in err
    assert await aredis.xlen(keys.dlq(stream)) == 1


async def test_the_commands_agree_on_options_counts_and_exit_codes(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    old = await seed(aredis, stream, 2)  # died in 2023
    new = await seed(aredis, stream, 1, start=2, dead_ms=int(time.time() * 1000))

    code, out, _ = await cli(redis_url, "dlq", "list", stream, "--older-than", "1d", "--json")
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == old
    code, out, _ = await cli(redis_url, "dlq", "replay", stream, "--older-than", "1d",
                             "--dry-run", "--json")  # fmt: skip
    assert code == 0 and json.loads(out.splitlines()[-1])["count"] == 2
    code, out, _ = await cli(redis_url, "dlq", "list", stream, "-g", "orders", "--json")
    assert code == 0 and len(out.splitlines()) == 3
    code, out, _ = await cli(redis_url, "dlq", "stats", stream, "--since", "1h")
    assert code == 0 and out.splitlines()[0] == "1 dead letter"

    for argv in (["list"], ["stats"], ["export"], ["replay"], ["purge", "--yes"]):
        code, _, err = await cli(redis_url, "dlq", *argv, stream, "--group", "nobody")
        assert code == 1 and "nothing matched" in err and _one_line(err), (argv, err)

    code, out, _ = await cli(redis_url, "dlq", "purge", stream, "--id", new[0], "--yes", "--json")
    assert code == 0 and json.loads(out) == {
        "action": "deleted",
        "count": 1,
        "streams": {stream: 1},
    }


async def test_ctrl_c_stops_a_replay_between_entries_and_says_what_is_left(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    await seed(aredis, stream, 200)
    target = keys.retry_stream(stream, "orders")
    argv = [sys.executable, "-m", "redrive.cli", "--redis-url", redis_url,
            "dlq", "replay", stream, "--all", "--rate", "100"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        await until(lambda: _has(aredis, target, 10), timeout=15, what="10 replayed")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    moved, left = await aredis.xlen(target), await aredis.xlen(keys.dlq(stream))
    assert proc.returncode == 130, (out, err)
    assert f"interrupted: replayed {moved}, {left} left in the DLQ" in err.decode()
    assert "Traceback" not in err.decode() and moved + left == 200 and left > 0
    [summary] = [f for _, f in await aredis.xrange(keys.AUDIT)
                 if f[b"action"] == b"replay" and f[b"streams"] == stream.encode()]  # fmt: skip
    assert summary[b"interrupted"] == b"true" and summary[b"count"] == str(moved).encode()
    assert summary[b"left"] == str(left).encode()
    assert await aredis.xlen(keys.audit_trail(stream)) == moved, "one record per moved entry"


async def _has(r: redis.asyncio.Redis, key: str, n: int) -> bool:
    return await r.exists(key) and await r.xlen(key) >= n
