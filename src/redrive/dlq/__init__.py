"""DLQ management: browse, group, replay, purge, retain, export and import dead letters.

The library behind ``redrive dlq``. Every function takes a ``redis.asyncio.Redis`` from
:func:`connect` (bytes replies, field order preserved) and checks its arguments before
any I/O.

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

from redrive.dlq.audit import Operation, operator
from redrive.dlq.canary import CanaryResult
from redrive.dlq.export_import import (
    ImportFileError,
    ImportResult,
    check_output,
    export_lines,
    import_records,
    parse_file,
    to_line,
    write_lines,
)
from redrive.dlq.fingerprint import compute as compute_fingerprint
from redrive.dlq.fingerprint import fingerprint, normalise_message
from redrive.dlq.model import DeadLetter, WrongTypeError, connect
from redrive.dlq.purge import PurgePlan, plan_purge, purge
from redrive.dlq.query import (
    AmbiguousIdError,
    Filter,
    FilterMismatchError,
    OnSkip,
    Page,
    UnknownIdError,
    UnknownStreamError,
    by_ids,
    find,
    known_streams,
    list_dead_letters,
    parse_duration,
    parse_time,
)
from redrive.dlq.ratelimit import TokenBucket, parse_rate
from redrive.dlq.replay import (
    Moved,
    ReplayOptions,
    ReplayReport,
    plan,
    replay,
)
from redrive.dlq.stats import DlqStats, FingerprintStats, dlq_stats
from redrive.store.retention import Retention, RetentionPass, apply_retention

__all__ = [
    "AmbiguousIdError",
    "CanaryResult",
    "DeadLetter",
    "DlqStats",
    "Filter",
    "FilterMismatchError",
    "FingerprintStats",
    "ImportFileError",
    "ImportResult",
    "Moved",
    "OnSkip",
    "Operation",
    "Page",
    "PurgePlan",
    "ReplayOptions",
    "ReplayReport",
    "Retention",
    "RetentionPass",
    "TokenBucket",
    "UnknownIdError",
    "UnknownStreamError",
    "WrongTypeError",
    "apply_retention",
    "by_ids",
    "check_output",
    "compute_fingerprint",
    "connect",
    "dlq_stats",
    "export_lines",
    "find",
    "fingerprint",
    "import_records",
    "known_streams",
    "list_dead_letters",
    "normalise_message",
    "operator",
    "parse_duration",
    "parse_file",
    "parse_rate",
    "parse_time",
    "plan",
    "plan_purge",
    "purge",
    "replay",
    "to_line",
    "write_lines",
]
