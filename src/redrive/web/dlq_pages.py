"""DLQ pages: the list (newest first), one entry, failure groups, audit; and the export.

Each reads through :mod:`redrive.dlq` (``newest``, ``by_ids``, ``dlq_stats``,
``view.summary``/``detail``, ``export_lines``, ``audit``) and renders; none issues its
own Redis command. A bad filter or an unknown id is one line on the page (400 / 404), a
Redis failure too (503). The export is the one action here (a POST, audited).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from redrive.core.codec import DATA_FIELD
from redrive.core.decision import REASONS
from redrive.dlq import audit, view
from redrive.dlq.export_import import export_lines
from redrive.dlq.model import DeadLetter
from redrive.dlq.newest import newest
from redrive.dlq.query import UnknownIdError, by_ids, known_streams
from redrive.dlq.stats import HOUR_MS, DlqStats, dlq_stats
from redrive.errors import ConfigError
from redrive.web import charts
from redrive.web.context import STORE_FAILURES
from redrive.web.forms import filter_from, filter_params, query

if TYPE_CHECKING:
    from redrive.web.context import Dashboard

PAGE_SIZE = 50
DAY_HOURS = 24


def dash_of(request: Request) -> Dashboard:
    """The :class:`Dashboard` of the app serving ``request``."""
    dash: Dashboard = request.app.state.dashboard
    return dash


def failure(request: Request, exc: Exception) -> HTMLResponse:
    """A page saying in one line what went wrong (a bad input, an unknown id, Redis)."""
    dash = dash_of(request)
    if isinstance(exc, ConfigError):
        status = 404 if isinstance(exc, UnknownIdError) else 400
        return dash.page(request, "error.html", status, message=str(exc))
    return dash.page(request, "error.html", 503, message=dash.describe(exc))


async def dead_letters(request: Request) -> Response:
    """``GET /dlq``: a page of dead letters, newest first, filtered, with a cursor."""
    dash, params = dash_of(request), dict(request.query_params)
    try:
        flt = filter_from(params)
        page = await newest(dash.client, flt, limit=PAGE_SIZE, cursor=params.get("cursor"))
        streams = await known_streams(dash.client)
    except (ConfigError, *STORE_FAILURES) as exc:
        return failure(request, exc)
    older = f"/dlq?{query(params, cursor=page.cursor)}" if page.cursor else None
    return dash.page(
        request,
        "dlq.html",
        rows=[view.summary(e) for e in page.entries],
        page=page,
        older=older,
        params=filter_params(params),
        streams=streams,
        reasons=REASONS,
        described=flt.describe(),
    )


async def entry(request: Request) -> Response:
    """``GET /dlq/entry?ref=STREAM@ID``: every field, history, traceback, provenance."""
    dash, ref = dash_of(request), request.query_params.get("ref", "")
    try:
        found = await by_ids(dash.client, filter_from({}, ids=(ref,)))
    except (ConfigError, *STORE_FAILURES) as exc:
        return failure(request, exc)
    shown = view.detail(found[0])
    return dash.page(request, "entry.html", e=shown, pretty=_pretty(found[0]), ref=ref)


def _pretty(entry: DeadLetter) -> str | None:
    """The JSON body pretty-printed, or ``None`` when it is not JSON."""
    raw = entry.field(DATA_FIELD)
    if raw is None:
        return None
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return None


async def groups(request: Request) -> Response:
    """``GET /groups``: failure groups (fingerprints) with first/last seen and a sample."""
    dash, params = dash_of(request), dict(request.query_params)
    try:
        flt = filter_from(params)
        stats = await dlq_stats(dash.client, flt)
    except (ConfigError, *STORE_FAILURES) as exc:
        return failure(request, exc)
    return dash.page(
        request,
        "groups.html",
        stats=stats,
        top=stats.top_fingerprints(),
        params=filter_params(params),
        hours=_hours(stats),
    )


def _hours(stats: DlqStats) -> dict[str, Markup]:
    """Per fingerprint: its dead letters per hour over the last day, as a bar chart."""
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - (DAY_HOURS - 1) * HOUR_MS
    out = {}
    for fp in stats.fingerprints.values():
        counts = fp.per_hour(start_ms, now_ms)
        label = f"per hour, last {DAY_HOURS} h: peak {max((n for _, n in counts), default=0)}"
        out[fp.fingerprint] = charts.bars(counts, label=label)
    return out


async def audit_log(request: Request) -> Response:
    """``GET /audit``: the newest operations of the audit log (CLI and dashboard alike)."""
    dash = dash_of(request)
    try:
        records = await audit.recent(dash.client, limit=100)
    except STORE_FAILURES as exc:
        return failure(request, exc)
    return dash.page(request, "audit.html", records=records)


async def export(request: Request) -> Response:
    """``POST /export``: the filter's dead letters as a JSONL download (``redrive dlq
    export``'s format; ``redrive dlq import`` reads it back). Payloads may hold personal
    data, so an export is an action: a POST, refused under ``--read-only``, and audited
    (``action=export``, the count, the filter, ``by=dashboard:<token id>``)."""
    dash = dash_of(request)
    fields = {k: str(v) for k, v in (await request.form()).items()}
    try:
        flt = filter_from(fields)
        lines = list(await export_lines(dash.client, flt))
        op = audit.Operation.start("export", by=dash.access.by)
        streams = sorted({json.loads(line)["stream"] for line in lines})
        details = {"filter": flt.describe()}
        await audit.record(dash.client, op, count=len(lines), streams=streams, details=details)
    except (ConfigError, *STORE_FAILURES) as exc:
        return failure(request, exc)

    async def body() -> AsyncIterator[bytes]:
        for line in lines:
            yield (line + "\n").encode()

    name = 'attachment; filename="dead-letters.jsonl"'
    return StreamingResponse(
        body(), media_type="application/x-ndjson", headers={"content-disposition": name}
    )
