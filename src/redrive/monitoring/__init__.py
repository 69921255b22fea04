"""Monitoring: what workers publish, what any process can read, and how it is shown.

- :mod:`~redrive.monitoring.window` reads the per-second metrics stream of a group;
- :mod:`~redrive.monitoring.collector` takes a :class:`~redrive.monitoring.model.Snapshot`
  of every indexed stream (lengths, lag, pending, consumers, retries, DLQ, rates) with
  read-only commands;
- :mod:`~redrive.monitoring.prometheus` exposes snapshots (or a worker's own counters)
  in the Prometheus text format;
- :mod:`~redrive.monitoring.health` evaluates thresholds, :mod:`~redrive.monitoring.alerts`
  persists check states and calls webhooks on changes;
- :mod:`~redrive.monitoring.dashboard` renders the terminal dashboard.

Example::

    from redrive.monitoring.collector import collect
    from redrive.monitoring.health import evaluate
    from redrive.monitoring.thresholds import HealthConfig

    snapshot = collect(client)                 # a sync redis.Redis
    report = evaluate(snapshot, HealthConfig())
    print(report.state)                        # State.OK / WARN / CRIT / UNKNOWN
"""
