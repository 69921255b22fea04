"""Real ``redrive worker`` processes for the demo, the simulator, chaos tests and benchmarks.

Not under :mod:`redrive.testing`: the demo and the simulator ship in the package and run
workers too, and the simulator must not depend on test helpers. Not under
:mod:`redrive.store` either: these are worker processes, not Redis (the redis-server
spawner, which stops its processes by pid the same way, is :mod:`redrive.store.server`).
The supervisor of ``redrive worker --processes N`` is :mod:`redrive.process.supervisor`.

Example::

    from redrive.process import WorkerGroup, worker_argv

    group = WorkerGroup(log_dir)
    group.start(worker_argv(url, "myapp:app", "w1"), consumer="w1")
"""

from redrive.process.workers import WorkerGroup, WorkerProcess, last_logged, worker_argv

__all__ = ["WorkerGroup", "WorkerProcess", "last_logged", "worker_argv"]
