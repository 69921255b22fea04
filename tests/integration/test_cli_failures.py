"""Every subcommand against every failure: one line on stderr, the documented exit code,
no traceback, and nothing changed.

The expected exit codes are read from the failure table of docs/operations.md ("Exit
codes"), so the table and the behaviour cannot drift apart. Each row names the failure
in backticks; the test runs every command the row applies to (in this process, through
``redrive.cli.main.main``, so an uncaught exception would surface here).

A failure that is only a warning (a bad key among good ones: exit 0, or 1 for health)
adds one line to stderr and takes nothing away: a ``dlq`` command prints exactly what it
printed before the bad key was indexed, plus the warning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from redrive.store import keys
from redrive.testing import RedisProcess, free_port
from tests.integration.dlq_support import record, run_cli

DOCS = Path(__file__).parents[2] / "docs" / "operations.md"
NOT_APPLICABLE = "\N{EN DASH}"  # the cell of a failure a probe cannot meet
_ROW = re.compile(r"^\| `(?P<name>[a-z-]+)`[^|]*\|[^|]*\| (?P<health>\S+) \| (?P<other>\S+) \|")


def documented_codes() -> dict[str, tuple[int | None, int | None]]:
    """failure -> (exit code of ``health``, of every other command); None: not applicable."""
    text = DOCS.read_text()
    table = text[text.index("## Exit codes") :]
    rows = {}
    for line in table.splitlines():
        found = _ROW.match(line)
        if found:
            health, other = (_code(found[k]) for k in ("health", "other"))
            rows[found["name"]] = (health, other)
    return rows


def _code(cell: str) -> int | None:
    return None if cell == NOT_APPLICABLE else int(cell)


CODES = documented_codes()
#: Rows run against real clusters by tests/cluster/test_cli_contract_on_cluster.py
#: (``cluster-down`` only there: it needs a cluster with a master gone).
ON_CLUSTER = ("cluster-wrong-port", "not-a-cluster", "cluster-wrong-password", "cluster-down")

#: Commands that talk to Redis; {S}, {B}, {OUT}, {ARCHIVE}, {MIXED}, {APP} are filled in.
TALKERS: dict[str, list[str]] = {
    "health": ["health", "--no-alerts"],
    "monitor": ["monitor", "--once"],
    "metrics": ["metrics", "--once"],
    "audit": ["audit", "{S}"],
    "dlq list": ["dlq", "list"],
    "dlq show": ["dlq", "show", "1-0"],
    "dlq stats": ["dlq", "stats"],
    "dlq export": ["dlq", "export", "-o", "{OUT}"],
    "dlq replay": ["dlq", "replay", "{S}", "--all"],
    "dlq purge": ["dlq", "purge", "{S}", "--all", "--yes"],
    "dlq delete": ["dlq", "delete", "--id", "1-0", "--yes"],
    "dlq import": ["dlq", "import", "{ARCHIVE}"],
    "publish": ["publish", "{S}", "--data", '{{"order_id": 1}}'],
    "worker": ["worker", "{APP}"],
    "demo": ["demo", "--orders", "2", "--no-dashboard", "--no-replay", "--timeout", "1"],
}
READ_ONLY = ("health", "monitor", "metrics", "audit", "dlq list", "dlq show", "dlq stats",
             "dlq export")  # fmt: skip
INDEX_READERS = ("health", "monitor", "metrics")
#: Read every DLQ of the index (show: a bare id); export to stdout, so that the file
#: it writes is not a change.
DLQ_READERS = {"dlq list": TALKERS["dlq list"], "dlq stats": TALKERS["dlq stats"],
               "dlq export": ["dlq", "export"], "dlq show": TALKERS["dlq show"]}  # fmt: skip
#: Every command that reads a DLQ, naming stream {B} whose dlq:{B} is not a stream;
#: {MIXED} holds a new record for {S} and one for {B} (--allow-duplicates: no skipping).
NAMING_BAD: dict[str, list[str]] = {
    "audit": ["audit", "{B}"],
    "dlq list": ["dlq", "list", "{B}"],
    "dlq show": ["dlq", "show", "{B}@1-0"],
    "dlq stats": ["dlq", "stats", "{B}"],
    "dlq export": ["dlq", "export", "{B}", "-o", "{OUT}"],
    "dlq replay": ["dlq", "replay", "{B}", "--all"],
    "dlq purge": ["dlq", "purge", "{B}", "--all", "--yes"],
    "dlq delete": ["dlq", "delete", "--id", "{B}@1-0", "--yes"],
    "dlq import": ["dlq", "import", "{MIXED}", "--allow-duplicates"],
}
STARTERS: dict[str, list[str]] = {
    "server start": ["server", "start"],
    "publish": ["publish", "{S}", "--data", "{{}}"],
    "worker": ["worker", "{APP}"],
}


@dataclass(frozen=True)
class Case:
    failure: str
    command: str
    argv: tuple[str, ...]


def _cases() -> Iterator[Case]:
    connection = ("redis-down", "wrong-password", "cluster-wrong-port", "cluster-wrong-password",
                  "not-a-cluster")  # fmt: skip
    for failure in connection:
        for command, argv in TALKERS.items():
            yield Case(failure, command, tuple(argv))
    for command in READ_ONLY:
        yield Case("no-redis", command, tuple(TALKERS[command]))
    for command in INDEX_READERS:
        yield Case("wrong-type", command, tuple(TALKERS[command]))
    for command in INDEX_READERS:
        yield Case("dlq-wrong-type", command, tuple(TALKERS[command]))
    for command, argv in DLQ_READERS.items():
        yield Case("dlq-wrong-type", command, tuple(argv))
    for command, argv in NAMING_BAD.items():
        yield Case("dlq-wrong-type-named", command, tuple(argv))
    yield Case("unwritable-output", "dlq export", ("dlq", "export", "-o", "{MISSING}/x.jsonl"))
    for command, argv in STARTERS.items():
        yield Case("bad-data-dir", command, tuple(argv))
    yield Case("syntax-error", "worker", ("worker", "{BROKEN}"))


def _id(case: Case) -> str:
    return f"{case.failure}/{case.command.replace(' ', '-')}"


@pytest.fixture(scope="module")
def auth_server() -> Iterator[RedisProcess]:
    """A server with a password (redis-py's first PING is made before it is set)."""
    with RedisProcess() as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "right-password")
        yield server


@dataclass
class World:
    """Where each failure points, and what must stay as it is."""

    stream: str
    bad_keys: dict[str, tuple[str, str]]  # failure -> (index entry, the key not a stream)
    values: dict[str, str]
    urls: dict[str, str | None]
    data_dirs: dict[str, Path]
    watched: list[redis.Redis]
    prefix: str

    def argv(self, case: Case) -> list[str]:
        url = self.urls.get(case.failure)
        data_dir = self.data_dirs.get(case.failure, self.data_dirs["default"])
        head = ["--data-dir", str(data_dir)] + (["--redis-url", url] if url else [])
        return head + [part.format(**self.values) for part in case.argv]

    def state(self) -> list[object]:
        """Every key of this test (and the global ones), the data dirs, the files."""
        seen: list[object] = []
        for client in self.watched:
            names = sorted(client.scan_iter(match=f"*{self.prefix}*"))
            names += [k.encode() for k in (keys.STREAMS_INDEX, keys.HEALTH_STATE)]
            seen.append([(n, client.type(n), client.dump(n)) for n in names])
        for path in self.data_dirs.values():
            seen.append(sorted(p.name for p in path.iterdir()) if path.exists() else None)
        seen.append(Path(self.values["OUT"]).exists())
        return seen


@pytest.fixture
def own_db(redis_url: str) -> Iterator[tuple[str, redis.Redis]]:
    """Database 3 of the private server: its stream index holds only this test's entries,
    so health's overall state is this test's (other tests' streams are in database 0)."""
    url = redis_url[: -len("/0")] + "/3" if redis_url.endswith("/0") else redis_url
    client = redis.Redis.from_url(url)
    try:
        yield url, client
    finally:
        client.close()


@pytest.fixture
def world(
    own_db: tuple[str, redis.Redis],
    prefix: str,
    tmp_path: Path,
    auth_server: RedisProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    redis_url, r = own_db
    stream = f"{prefix}orders"
    r.xgroup_create(stream, "g", id="0", mkstream=True)
    r.xadd(stream, {"data": '{"order_id": 1}'})
    r.execute_command("XADD", keys.dlq(stream), "1-0", *record(stream, "1-0"))
    bad, bad_dlq = f"{prefix}hash", f"{prefix}baddlq"
    r.hset(bad, "not", "a stream")
    r.xgroup_create(bad_dlq, "g", id="0", mkstream=True)
    r.set(keys.dlq(bad_dlq), "not a stream")
    archive, mixed = tmp_path / "archive.jsonl", tmp_path / "mixed.jsonl"
    code, _, err = run_cli(["--redis-url", redis_url, "dlq", "export", stream, "-o", str(archive)])
    assert code == 0 and archive.read_text(), err
    line = json.loads(archive.read_text())
    new = {**line, "fields": [*line["fields"], ["note", "not in dlq yet"]]}
    mixed.write_text(json.dumps(new) + "\n" + json.dumps({**line, "stream": bad_dlq}) + "\n")
    module = f"rd_{prefix.strip(':')}"
    (tmp_path / f"{module}.py").write_text(
        f"from redrive import App\napp = App()\n\n@app.handler({stream!r}, group='g')\n"
        "async def handle(msg):\n    pass\n"
    )
    (tmp_path / f"{module}_broken.py").write_text("def handle(msg:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("REDRIVE_REDIS_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    free, plain = free_port(), redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    port = auth_server.port
    world = World(
        stream=stream,
        bad_keys={"wrong-type": (bad, bad), "dlq-wrong-type": (bad_dlq, keys.dlq(bad_dlq)),
                  "dlq-wrong-type-named": (bad_dlq, keys.dlq(bad_dlq))},
        values={"S": stream, "B": bad_dlq, "OUT": str(tmp_path / "out.jsonl"),
                "ARCHIVE": str(archive), "MIXED": str(mixed),
                "APP": f"{module}:app", "BROKEN": f"{module}_broken:app",
                "MISSING": str(tmp_path / "missing" / "dir")},
        urls={"redis-down": f"redis://127.0.0.1:{free}/0",
              "wrong-password": f"redis://:wrong@127.0.0.1:{port}/0",
              "cluster-wrong-port": f"redis+cluster://127.0.0.1:{free}",
              "cluster-wrong-password": f"redis+cluster://:wrong@127.0.0.1:{port}",
              "not-a-cluster": f"redis+cluster://127.0.0.1:{plain}",
              "no-redis": None, "bad-data-dir": None,
              "wrong-type": redis_url, "dlq-wrong-type": redis_url,
              "dlq-wrong-type-named": redis_url,
              "unwritable-output": redis_url, "syntax-error": redis_url},
        data_dirs={"default": tmp_path / "embedded", "bad-data-dir": Path("/proc/redrive/x")},
        watched=[r, redis.Redis.from_url(auth_server.url, password="right-password")],
        prefix=prefix,
    )  # fmt: skip
    try:
        yield world
    finally:
        world.watched[1].close()
        r.srem(keys.STREAMS_INDEX, stream, bad, bad_dlq)  # names no other test uses


@pytest.mark.parametrize("case", list(_cases()), ids=_id)
def test_one_line_the_documented_code_and_nothing_changed(case: Case, world: World) -> None:
    r = world.watched[0]
    index_entry, bad_key = world.bad_keys.get(case.failure, ("", ""))
    warns = case.failure in ("wrong-type", "dlq-wrong-type")
    ours = case.command.startswith(("dlq ", "audit"))  # these name the type, too
    if index_entry:
        r.sadd(keys.STREAMS_INDEX, world.stream)
    baseline = run_cli(world.argv(case)) if warns and ours else None
    if index_entry:
        r.sadd(keys.STREAMS_INDEX, index_entry)
    before = world.state()

    code, out, err = run_cli(world.argv(case))

    health, other = CODES[case.failure]
    expected = health if case.command == "health" else other
    assert expected is not None, f"docs/operations.md gives no code for {_id(case)}"
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines, err
    assert code == expected, f"exit {code}, documented {expected}: {err}"
    assert "right-password" not in err and ":wrong@" not in err, "no password in messages"
    if bad_key:  # the line names the key (and, from redrive.dlq and audit, what it holds)
        assert bad_key in lines[0], lines[0]
        assert not ours or f"{bad_key} is a string, not a stream" in lines[0], lines[0]
    if baseline is not None:  # one warning more, nothing less
        assert (code, out) == baseline[:2], f"differs from the run without the bad key: {err}"
        assert lines == [lines[0], *baseline[2].strip().splitlines()], err
        assert lines[0].startswith("warning: "), lines[0]
    else:
        assert len(lines) == 1, err
    if expected in (2, 3):
        assert not out.strip() or case.command == "demo", out
    elif baseline is None:  # one bad index entry reported on stderr; the good stream is shown
        assert world.stream in out, out
    assert world.state() == before, "nothing changed"


def test_the_table_documents_every_failure_the_test_runs() -> None:
    ran = {c.failure for c in _cases()} | set(ON_CLUSTER)
    assert ran == set(CODES), "docs/operations.md and these tests name the same failures"
