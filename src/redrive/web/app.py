"""The dashboard's ASGI application: routes, live events, and its lifespan.

Example::

    access = Access(new_token(), allowed_hosts("127.0.0.1", 8765))
    app = create_app(DashboardSettings("redis://localhost:6379/0", access))
    uvicorn.run(app, host="127.0.0.1", port=8765)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from redrive.web import actions, dlq_pages, jobs_view, overview
from redrive.web.context import HERE, Dashboard, DashboardSettings
from redrive.web.security import ASGIApp, SecurityMiddleware

#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE = 15.0


async def home(request: Request) -> Response:
    """``GET /``: the overview, rendered now, then kept live by ``/events``."""
    dash = dlq_pages.dash_of(request)
    return dash.page(request, "overview.html", **await overview.load(dash))


async def events(request: Request) -> Response:
    """``GET /events``: server-sent events of the shared poller's fragments."""
    dash = dlq_pages.dash_of(request)
    queue = dash.poller.subscribe()

    async def stream() -> AsyncIterator[str]:
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if frame is None:
                    return
                yield f"data: {json.dumps(frame)}\n\n"
        finally:
            dash.poller.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="text/event-stream")


def routes() -> list[Route | Mount]:
    """Every route; the POST ones are the actions (checked by the middleware)."""
    return [
        Route("/", home),
        Route("/events", events),
        Route("/dlq", dlq_pages.dead_letters),
        Route("/dlq/entry", dlq_pages.entry),
        Route("/groups", dlq_pages.groups),
        Route("/audit", dlq_pages.audit_log),
        Route("/export", dlq_pages.export, methods=["POST"]),
        Route("/jobs", jobs_view.job_list),
        Route("/jobs/{job}", jobs_view.job_page),
        Route("/actions/preview", actions.preview, methods=["POST"]),
        Route("/actions/confirm", actions.confirm, methods=["POST"]),
        Route("/jobs/{job}/{verb}", actions.steer, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


#: Every path that changes something (tests check each is refused as they should be).
ACTION_PATHS = ("/actions/preview", "/actions/confirm", "/jobs/x/pause", "/jobs/x/resume",
                "/jobs/x/cancel", "/export")  # fmt: skip


def create_app(settings: DashboardSettings) -> ASGIApp:
    """The dashboard for ``settings``, wrapped in its security middleware."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        dash = Dashboard(settings)
        app.state.dashboard = dash
        stop = asyncio.Event()
        runner = None
        if settings.run_jobs and not settings.access.read_only:
            runner = asyncio.create_task(jobs_view.run_jobs(dash, stop), name="job runner")
        try:
            yield
        finally:
            stop.set()
            if runner is not None:
                await _finish(runner)
            await dash.aclose()

    app = Starlette(routes=routes(), lifespan=lifespan)
    return SecurityMiddleware(app, settings.access)


async def _finish(task: asyncio.Task[Any]) -> None:
    """Let the runner end its step (it checks ``stop`` between entries), then cancel."""
    try:
        await asyncio.wait_for(task, 5.0)
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
