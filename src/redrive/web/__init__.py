"""``redrive dashboard``: the web console (overview, DLQ triage, supervised replay).

Server-rendered pages (Starlette, Jinja2 with autoescape) over the same library as the
CLI: :mod:`redrive.monitoring` for the overview and its alerts, :mod:`redrive.dlq` for
dead letters, failure groups, snapshots and jobs. Live updates come from one shared
poller over server-sent events; charts are SVG drawn on the server; the only script
is a small static module (no build step). Security by default: :mod:`.security`.

Starlette, Jinja2 and uvicorn are the ``web`` extra (``pip install 'redrive[web]'``):
importing this package without them raises ImportError, which ``redrive dashboard``
turns into one line saying how to install them.

Example::

    from redrive.web import Access, DashboardSettings, allowed_hosts, create_app, new_token

    access = Access(new_token(), allowed_hosts("127.0.0.1", 8765))
    app = create_app(DashboardSettings("redis://localhost:6379/0", access))
"""

from redrive.web.app import create_app
from redrive.web.context import DashboardSettings
from redrive.web.security import Access, allowed_hosts, new_token, read_token_file

__all__ = [
    "Access",
    "DashboardSettings",
    "allowed_hosts",
    "create_app",
    "new_token",
    "read_token_file",
]
