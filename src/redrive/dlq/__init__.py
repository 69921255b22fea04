"""DLQ management: browse, group, replay, purge, retain, export and import dead letters.

The library behind ``redrive dlq``. Every function takes a ``redis.asyncio.Redis`` from
:func:`connect` (bytes replies, field order preserved) and checks its arguments before
any I/O. Only the library surface is exported here; the helpers of ``redrive dlq``
(time and rate parsers, output files) stay in their modules (``redrive.dlq.query``,
``redrive.dlq.ratelimit``, ``redrive.dlq.export_import``). Previews bound to a snapshot
and supervised jobs live in ``redrive.dlq.snapshot`` and ``redrive.dlq.jobs`` (their
classes are exported here).

Example::

    from redrive import dlq

    client = dlq.connect("redis://localhost:6379/0")
    stats = await dlq.dlq_stats(client, dlq.Filter(streams=("ecommerce:orders",)))
    report = await dlq.replay(
        client,
        dlq.Filter(streams=("ecommerce:orders",), error_type="TimeoutError"),
        dlq.ReplayOptions(rate=100, canary=5, note="payment gateway fixed"),
    )
"""

from redrive.dlq.export_import import (
    ImportFileError,
    ImportResult,
    export_lines,
    import_records,
    parse_file,
)
from redrive.dlq.jobs import Job, JobSpec, JobStateError, UnknownJobError
from redrive.dlq.jobs_runner import JobRunner
from redrive.dlq.model import DeadLetter, WrongTypeError, connect
from redrive.dlq.purge import PurgePlan, plan_purge, purge
from redrive.dlq.query import (
    AmbiguousIdError,
    Filter,
    FilterMismatchError,
    Page,
    UnknownIdError,
    UnknownStreamError,
    by_ids,
    find,
    known_streams,
    list_dead_letters,
)
from redrive.dlq.replay import ReplayOptions, ReplayReport, plan, replay
from redrive.dlq.snapshot import Preview, UnknownSnapshotError
from redrive.dlq.stats import DlqStats, dlq_stats
from redrive.store.retention import Retention, apply_retention

__all__ = [
    "AmbiguousIdError",
    "DeadLetter",
    "DlqStats",
    "Filter",
    "FilterMismatchError",
    "ImportFileError",
    "ImportResult",
    "Job",
    "JobRunner",
    "JobSpec",
    "JobStateError",
    "Page",
    "Preview",
    "PurgePlan",
    "ReplayOptions",
    "ReplayReport",
    "Retention",
    "UnknownIdError",
    "UnknownJobError",
    "UnknownSnapshotError",
    "UnknownStreamError",
    "WrongTypeError",
    "apply_retention",
    "by_ids",
    "connect",
    "dlq_stats",
    "export_lines",
    "find",
    "import_records",
    "known_streams",
    "list_dead_letters",
    "parse_file",
    "plan",
    "plan_purge",
    "purge",
    "replay",
]
