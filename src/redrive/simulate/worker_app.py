"""The app each simulated worker process runs: the e-commerce services plus instruments.

``redrive worker redrive.simulate.worker_app:app`` builds it at import from the
environment the simulator sets:

- ``REDRIVE_SIM`` (JSON): ``prefix``, ``seed``, ``worker`` and the ``handler`` settings
  of the scenario (:class:`~redrive.simulate.scenario.HandlerSettings`);
- ``REDRIVE_FAULTS``: the fault plan (:mod:`redrive.simulate.faults`), if any.

``REDRIVE_SIM_BROKEN=ack-first`` is a deliberately broken build for tests only: a
middleware acknowledges each entry *before* the handler runs and sometimes crashes the
process right after. A run with it must report lost messages — the proof that the
reconciliation can fail. ``REDRIVE_SIM_BROKEN=effect-outside`` breaks an idempotent
scenario instead: each run applies its effect itself, before its commit, instead of
returning it to be applied with the ack — double effects must follow. Both live here,
never in the runtime's hot path.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, replace
from typing import Any

from redrive.core.message import Message
from redrive.examples.ecommerce import build_app
from redrive.runtime.app import App, AppContext
from redrive.runtime.settings import AsyncHandler, HandlerSpec, Middleware
from redrive.simulate.faults import install_from_env
from redrive.simulate.ledger import SimLedger
from redrive.simulate.scenario import HandlerSettings

ENV_SIM = "REDRIVE_SIM"
ENV_BROKEN = "REDRIVE_SIM_BROKEN"
BROKEN_CRASH_RATE = 0.01
BROKEN_EXIT_CODE = 87


def sim_env(prefix: str, seed: int, worker: str, handler: HandlerSettings) -> str:
    """The ``REDRIVE_SIM`` value for one worker."""
    return json.dumps(
        {"prefix": prefix, "seed": seed, "worker": worker, "handler": asdict(handler)}
    )


def build_sim_app(environ: dict[str, str] | None = None) -> App:
    """Build the simulated services from the environment (see the module docstring)."""
    env = dict(os.environ if environ is None else environ)
    config: dict[str, Any] = json.loads(env.get(ENV_SIM, "{}"))
    h = HandlerSettings(**config.get("handler", {}))
    worker = str(config.get("worker", "anonymous"))
    ledger = SimLedger(worker)
    app = build_app(
        retry=h.retry_policy(),
        breaker=h.breaker_policy(),
        seed=int(config.get("seed", 0)),
        ledger=ledger,
        prefix=str(config.get("prefix", "")),
    )
    app.specs = [replace(s, **h.spec_options()) for s in app.specs]
    app.on_startup(ledger.connect)
    if env.get(ENV_BROKEN) == "ack-first":
        app.use(_ack_first(app, worker))
    app.use(ledger.observe_lateness)
    if h.idempotent:
        broken = env.get(ENV_BROKEN) == "effect-outside"
        app.use(ledger.effect_outside if broken else ledger.fused_effect)
    install_from_env(app, env)
    return app


def _ack_first(app: App, worker: str) -> Middleware:
    """The broken build: XACK before the handler, crash now and then (tests only)."""
    clients: list[Any] = []
    rng = random.Random(f"broken:{worker}:{os.getpid()}")

    async def connect(ctx: AppContext) -> None:
        clients.append(ctx.redis)

    app.on_startup(connect)

    def wrap(spec: HandlerSpec, call_next: AsyncHandler) -> AsyncHandler:
        async def call(msg: Message) -> Any:
            await clients[0].xack(msg.key, spec.group, msg.entry_id)
            if rng.random() < BROKEN_CRASH_RATE:
                os._exit(BROKEN_EXIT_CODE)
            return await call_next(msg)

        return call

    return wrap


#: What ``redrive worker redrive.simulate.worker_app:app`` runs.
app = build_sim_app()
