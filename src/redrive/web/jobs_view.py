"""Supervised jobs: the list, one job's progress, and the runner this process hosts.

Jobs live in Redis (:mod:`redrive.dlq.jobs`), so the pages only read them; progress is
refreshed by the shared poller (one fragment per recent job).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from redrive.dlq import jobs
from redrive.dlq.jobs_runner import JobRunner
from redrive.errors import ConfigError
from redrive.web.context import STORE_FAILURES
from redrive.web.dlq_pages import dash_of, failure

if TYPE_CHECKING:
    from redrive.web.context import Dashboard

log = logging.getLogger("redrive.web")
RECENT = 20


async def fragment(dash: Dashboard) -> dict[str, str]:
    """The jobs table and each recent job's progress, rendered."""
    try:
        listed = await jobs.list_jobs(dash.client, limit=RECENT)
    except STORE_FAILURES as exc:
        return {"jobs": dash.html("_jobs.html", jobs=[], error=dash.describe(exc))}
    out = {"jobs": dash.html("_jobs.html", jobs=listed, error=None)}
    for job in listed:
        out[f"job-{job.id}"] = dash.html("_job.html", job=job)
    return out


async def job_list(request: Request) -> Response:
    """``GET /jobs``."""
    dash = dash_of(request)
    try:
        listed = await jobs.list_jobs(dash.client, limit=RECENT)
    except STORE_FAILURES as exc:
        return failure(request, exc)
    return dash.page(request, "jobs.html", jobs=listed, error=None)


async def job_page(request: Request) -> Response:
    """``GET /jobs/ID``: progress, counts, reason, and pause/resume/cancel."""
    dash = dash_of(request)
    try:
        job = await jobs.get(dash.client, request.path_params["job"])
    except (ConfigError, *STORE_FAILURES) as exc:
        return failure(request, exc)
    return dash.page(request, "job.html", job=job)


async def run_jobs(dash: Dashboard, stop: asyncio.Event) -> None:
    """Run stored jobs until ``stop`` (those left by a previous run included); a
    failure is logged and the runner starts again a second later."""
    runner = JobRunner(dash.client, name=dash.settings.runner_name)
    while not stop.is_set():
        try:
            await runner.run(stop)
        except Exception:  # keep serving pages; the jobs wait in Redis
            log.exception("the job runner failed; starting it again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
