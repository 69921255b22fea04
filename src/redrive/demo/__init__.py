"""``redrive demo``: the e-commerce story end to end, ending in a reconciliation.

- :mod:`redrive.demo.run` — the run itself (:func:`run_demo`, its config, observer and report);
- :mod:`redrive.demo.slot` — the key prefix a run owns (``demo:``, ``demo2:``…);
- :mod:`redrive.demo.workers` — its ``redrive worker`` processes.

Example::

    from redrive.demo import DemoConfig, run_demo

    report = run_demo(DemoConfig(redis_url="redis://localhost:6379/0", total=300))
    assert report.lost == 0
"""

from redrive.demo.run import (
    DemoConfig,
    DemoError,
    DemoObserver,
    DemoReport,
    DemoSession,
    QuietObserver,
    StreamProgress,
    demo_keys,
    demo_streams,
    run_demo,
)
from redrive.demo.slot import DemoSlot, SlotError

__all__ = [
    "DemoConfig",
    "DemoError",
    "DemoObserver",
    "DemoReport",
    "DemoSession",
    "DemoSlot",
    "QuietObserver",
    "SlotError",
    "StreamProgress",
    "demo_keys",
    "demo_streams",
    "run_demo",
]
