"""What every route of the dashboard shares: settings, Redis clients, templates, poller."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from jinja2 import Environment, FileSystemLoader, select_autoescape
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import HTMLResponse

from redrive.dlq import connect
from redrive.dlq.model import iso
from redrive.monitoring.dashboard import fmt_age
from redrive.monitoring.thresholds import HealthConfig
from redrive.store.connection import describe_error, redact_url, sync_client
from redrive.web.poller import Frame, Poller
from redrive.web.security import CSRF_FIELD, Access

log = logging.getLogger("redrive.web")
HERE = Path(__file__).parent
#: Errors a page shows as one line (any Redis or socket failure).
STORE_FAILURES = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """How ``redrive dashboard`` runs: where Redis is, who may act, what to judge by.

    ``streams`` narrows the overview (empty: every indexed stream); ``run_jobs`` runs
    the supervised-job runner in this process (never under ``--read-only``).
    """

    redis_url: str
    access: Access
    health: HealthConfig = field(default_factory=HealthConfig)
    streams: tuple[str, ...] = ()
    interval: float = 1.0
    run_jobs: bool = True
    runner_name: str = "dashboard"


def environment() -> Environment:
    """Jinja2 with autoescape on for every template: payloads are text, never markup."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["iso"] = lambda ms: iso(int(ms)) if ms else "-"
    env.filters["age"] = fmt_age
    return env


class Dashboard:
    """The state of one dashboard process (one owner: the app's lifespan)."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.access = settings.access
        self.client: Redis = connect(settings.redis_url)
        self.sync: redis.Redis = sync_client(
            settings.redis_url, socket_timeout=10.0, socket_connect_timeout=3.0
        )
        self.env = environment()
        self.poller = Poller(self.frame, settings.interval)
        from redrive.web.overview import ChartCache  # overview imports this module

        self.charts = ChartCache()
        self.where = redact_url(settings.redis_url)

    def describe(self, exc: BaseException) -> str:
        """One line about a Redis failure (the URL's password masked)."""
        return describe_error(exc, self.settings.redis_url)

    def html(self, name: str, **context: Any) -> str:
        """Template ``name`` rendered with the globals every page needs."""
        template = self.env.get_template(name)
        return template.render(
            csrf=self.access.csrf,
            csrf_field=CSRF_FIELD,
            read_only=self.access.read_only,
            redis=self.where,
            token_id=self.access.token_id,
            **context,
        )

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """An HTML response of template ``name``."""
        return HTMLResponse(self.html(name, path=request.url.path, **context), status)

    async def frame(self) -> Frame:
        """The live fragments every open page may show (one poll for all of them); a
        part that fails is left out (and logged), the others still update."""
        from redrive.web import jobs_view, overview

        out: Frame = {}
        try:
            out["overview"] = await overview.fragment(self)
        except Exception:
            log.exception("the overview fragment failed")
        try:
            out.update(await jobs_view.fragment(self))
        except Exception:
            log.exception("the jobs fragment failed")
        return out

    async def aclose(self) -> None:
        """Stop the poll and close both clients."""
        await self.poller.close()
        await self.client.aclose()
        await asyncio.to_thread(self.sync.close)
