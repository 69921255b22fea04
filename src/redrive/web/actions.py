"""Actions: preview a bulk action bound to a snapshot, then run it as a supervised job.

Replay one, a selection, a filter or a failure group, and delete, all go the same way:

1. ``POST /actions/preview`` (the selection's ids or the filter): the library takes a
   snapshot (:func:`redrive.dlq.snapshot.take`), which resolves the selection *now* to
   exact entries; the page shows their exact count and a sample.
2. ``POST /actions/confirm`` names that snapshot: the job
   (:func:`redrive.dlq.jobs.submit`) acts on its entries only, so a dead letter that
   arrives after the preview is never swept in. The job is audited with
   ``by=dashboard:<token id>``; the runner of this process (or of any other) runs it.
3. ``POST /jobs/ID/pause|resume|cancel`` steer it between two entries.

The security middleware has already checked the session, the origin, the CSRF token
and ``--read-only`` before any of these runs.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from redrive.dlq import jobs, snapshot
from redrive.errors import ConfigError
from redrive.web.context import STORE_FAILURES
from redrive.web.dlq_pages import dash_of, failure
from redrive.web.forms import FILTER_FIELDS, filter_from, number

ACTIONS = ("replay", "delete")
SAMPLE = 5


def _action(form: dict[str, str]) -> str:
    action = form.get("action", "")
    if action not in ACTIONS:
        raise ConfigError(f"action {action!r}: use replay or delete")
    return action


async def preview(request: Request) -> Response:
    """Bind the selection (``ids``) or the filter to a snapshot and show what it holds."""

    dash = dash_of(request)
    form = await request.form()
    fields = {k: str(v) for k, v in form.items()}
    ids = tuple(str(v) for v in form.getlist("ids"))
    try:
        action = _action(fields)
        if fields.get("selection") and not ids:
            # An empty selection is not "no criterion": it must never become "everything".
            raise ConfigError("nothing selected: tick the dead letters to act on")
        flt = filter_from(fields, ids=ids)
        taken = await snapshot.take(dash.client, flt, sample=SAMPLE)
    except (ConfigError, *STORE_FAILURES) as exc:
        return failure(request, exc)
    carried = {k: fields[k] for k in FILTER_FIELDS if fields.get(k)}
    return dash.page(request, "preview.html", action=action, preview=taken, carried=carried)


def _target(fields: dict[str, str]) -> str | None:
    """``None`` (each entry's group retry stream, as the CLI) or the stream named."""

    if fields.get("target") != "stream":
        return None
    to = fields.get("to", "").strip()
    if not to:
        raise ConfigError("name the stream to replay into, or choose the retry stream")
    return to


async def confirm(request: Request) -> Response:
    """Submit the job of a previewed snapshot; then show the job."""
    dash = dash_of(request)
    fields = {k: str(v) for k, v in (await request.form()).items()}
    try:
        action = _action(fields)
        await snapshot.load(dash.client, fields.get("snapshot", ""))
        canary = number(fields, "canary", integer=True)
        spec = jobs.JobSpec(
            action=action,
            snapshot=fields.get("snapshot", ""),
            to=_target(fields) if action == "replay" else None,
            rate=number(fields, "rate"),
            canary=int(canary or 0),
            note=fields.get("note", "").strip(),
            by=dash.access.by,
        )
        job = await jobs.submit(dash.client, spec)
    except (ConfigError, *STORE_FAILURES) as exc:
        return failure(request, exc)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


async def steer(request: Request) -> Response:
    """``POST /jobs/ID/pause|resume|cancel``: by whom is recorded in the audit log."""
    dash = dash_of(request)
    job_id, verb = request.path_params["job"], request.path_params["verb"]
    by = dash.access.by
    try:
        if verb == "pause":
            await jobs.pause(dash.client, job_id, by=by)  # the library says "paused by …"
        elif verb == "resume":
            await jobs.resume(dash.client, job_id, by=by)
        elif verb == "cancel":
            await jobs.cancel(dash.client, job_id, by=by)
        else:
            raise ConfigError(f"{verb!r}: use pause, resume or cancel")
    except (ConfigError, *STORE_FAILURES) as exc:
        return failure(request, exc)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
