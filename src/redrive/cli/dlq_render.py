"""How ``redrive dlq`` prints its results: tables (tab-separated in a pipe) or JSON lines.

Every dead letter is printed as ``STREAM@ID``, the form every ``--id`` accepts (ids repeat
across DLQs, so a bare id is not enough to name one).
"""

from __future__ import annotations

import json
from typing import Any

import click

from redrive import dlq as lib
from redrive.cli.tabular import Col, emit
from redrive.dlq import view


def letters(count: int) -> str:
    """``1 dead letter``, ``2 dead letters``."""
    return f"{count} dead letter{'' if count == 1 else 's'}"


def emit_json(obj: dict[str, Any]) -> None:
    """One JSON object on one line of stdout."""
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


LIST_COLS = (
    Col("id"), Col("died"), Col("group"), Col("reason"), Col("error", keep=False),
    Col("att", right=True), Col("rep", right=True), Col("payload", keep=False),
)  # fmt: skip


def print_list(rows: list[dict[str, Any]]) -> None:
    """The ``dlq list`` table: one dead letter per row, ids and times whole."""
    emit(LIST_COLS, [
        [r["ref"], r["dead_at"], r["group"], r["reason"],
         f"{r['error_type']}: {r['error_message']}", str(r["attempts"]), str(r["replays"]),
         r["payload"]] for r in rows
    ])  # fmt: skip


def trace_links(out: dict[str, Any], template: str | None) -> None:
    """Add ``url`` (and ``origin_url``) to ``out["trace"]`` from a ``--trace-url``
    template such as ``https://tempo.example/trace/{trace_id}``."""
    trace = out.get("trace")
    if not template or not trace:
        return
    if trace.get("trace_id"):
        trace["url"] = template.format(trace_id=trace["trace_id"], span_id=trace["span_id"])
    if trace.get("origin_trace_id"):
        trace["origin_url"] = template.format(trace_id=trace["origin_trace_id"], span_id="")


def check_trace_url(template: str | None) -> str | None:
    """Refuse a ``--trace-url`` template that names anything but ``{trace_id}`` and
    ``{span_id}`` (before any I/O, one clear line)."""
    if template is None:
        return None
    try:
        template.format(trace_id="0" * 32, span_id="0" * 16)
    except (KeyError, IndexError, ValueError) as exc:
        raise click.BadParameter(
            f"{template!r} ({type(exc).__name__}: {exc}): use {{trace_id}} and {{span_id}}, "
            "e.g. 'https://tempo.example/trace/{trace_id}'",
            param_hint="--trace-url",
        ) from None
    if "{trace_id}" not in template:
        raise click.BadParameter(f"{template!r} has no {{trace_id}}", param_hint="--trace-url")
    return template


def print_detail(out: dict[str, Any]) -> None:
    """``dlq show``: a heading, the trace, every field, the attempt history, the traceback."""
    click.echo(f"{out['ref']} died {out['dead_at']} ({out['reason']})")
    trace = out.get("trace")
    if trace and trace.get("trace_id"):
        click.echo(f"trace: {trace['trace_id']}  span: {trace['span_id']}")
        if trace.get("url"):
            click.echo(f"  {trace['url']}")
    if trace and trace.get("origin_trace_id"):
        click.echo(f"producer's trace: {trace['origin_trace_id']}")
        if trace.get("origin_url"):
            click.echo(f"  {trace['origin_url']}")
    fields = [[str(name), json.dumps(value) if isinstance(value, dict) else str(value)]
              for name, value in out["fields"]]  # fmt: skip
    emit((Col("field"), Col("value", keep=False)), fields)
    history = []
    for item in out["history"]:
        at = view.iso(int(item.get("t", 0)))
        if "replay" in item:
            note = f"replayed by {item.get('by', '?')} from {item.get('from', '?')}"
            history.append([f"R{item['replay']}", at, "", "",
                            f"{note} {item.get('note', '')}".strip(), ""])  # fmt: skip
            continue
        history.append([str(item.get(k, "")) for k in ("a", "t", "c", "e", "m", "d")])
        history[-1][1] = at
    cols = (Col("attempt"), Col("at"), Col("consumer"), Col("error"),
            Col("message", keep=False), Col("ms", right=True))  # fmt: skip
    emit(cols, history, title="attempts")
    if out["traceback"]:
        click.echo("traceback:")
        click.echo(out["traceback"])


def print_stats(result: lib.DlqStats, top: int) -> None:
    """``dlq stats``: the total, then counts per stream, reason, error type, fingerprint."""
    click.echo(letters(result.total))
    for title, counts in (("stream", result.streams), ("reason", result.reasons),
                          ("error type", result.error_types)):  # fmt: skip
        emit((Col(title), Col("count", right=True)),
             [[name, str(n)] for name, n in counts.most_common(top)])  # fmt: skip
    rows = [[fp.fingerprint, str(fp.count), f"{fp.error_type}: {fp.message}",
             view.iso(fp.first_ms), view.iso(fp.last_ms)]
            for fp in result.top_fingerprints()[:top]]  # fmt: skip
    cols = (Col("fingerprint"), Col("count", right=True), Col("error", keep=False),
            Col("first seen"), Col("last seen"))  # fmt: skip
    emit(cols, rows, title="fingerprints")


def print_replay(report: lib.ReplayReport, as_json: bool) -> None:
    """What a replay did (or would do), entry by entry, then a one-line summary."""
    verb = "would replay" if report.dry_run else "replayed"
    if as_json:
        _replay_json(report, verb)
    else:
        _replay_lines(report, verb)
    if report.interrupted:  # on stderr in both modes: the operator is watching
        click.echo(f"interrupted: replayed {len(report.moved)}, {report.left} left in the DLQ",
                   err=True)  # fmt: skip
    elif report.stopped and not as_json:
        click.echo(f"stopped: {report.stopped}", err=True)


def _replay_lines(report: lib.ReplayReport, verb: str) -> None:
    if report.dry_run:
        for entry, target in report.planned:
            click.echo(f"would replay {entry.ref} -> {target}")
    for entry, why in report.refused:
        click.echo(f"refused {entry.ref}: {why}")
    count = len(report.planned) if report.dry_run else len(report.moved)
    click.echo(f"{verb} {count}, refused {len(report.refused)}"
               + (f", already gone {len(report.gone)}" if report.gone else ""))  # fmt: skip


def _replay_json(report: lib.ReplayReport, verb: str) -> None:
    if report.dry_run:
        rows = [{"ref": e.ref, "id": e.id, "stream": e.stream, "target": t, "action": verb}
                for e, t in report.planned]  # fmt: skip
    else:
        rows = [{"ref": m.ref, "id": m.dlq_id, "stream": m.stream,
                 "target": m.target, "target_id": m.target_id, "action": verb}
                for m in report.moved]  # fmt: skip
    rows += [{"ref": e.ref, "id": e.id, "stream": e.stream, "action": "refused", "why": why}
             for e, why in report.refused]  # fmt: skip
    for row in rows:
        emit_json(row)
    emit_json({"summary": verb, "count": len(rows) - len(report.refused),
               "refused": len(report.refused), "gone": len(report.gone),
               "stopped": report.stopped or None, "interrupted": report.interrupted,
               "left": report.left if not report.dry_run else None,
               "op": report.op or None})  # fmt: skip


def print_import(result: lib.ImportResult, as_json: bool) -> None:
    """Per stream what was imported and what was already there, then the totals."""
    streams = sorted(set(result.imported) | set(result.present))
    if as_json:
        for stream in streams:
            emit_json({"stream": stream, "imported": result.imported.get(stream, 0),
                       "already_present": result.present.get(stream, 0)})  # fmt: skip
        emit_json({"summary": "import", "imported": result.total_imported,
                   "already_present": result.total_present})  # fmt: skip
        return
    for stream in streams:
        if result.imported.get(stream):
            click.echo(f"imported {letters(result.imported[stream])} into {stream}")
    line = f"imported {result.total_imported}, {result.total_present} already present"
    if result.total_present:
        line += " (skipped; --allow-duplicates imports them anyway)"
    click.echo(line)
