"""The DLQ tools and app hooks, unchanged, against the local Redis Cluster.

``redrive dlq list|show|stats|replay|purge|export|import`` and the retention loop touch
``dlq:{S}`` with its stream and audit keys (one slot) and the global index
``redrive:streams`` (one key): nothing has to fan out. Tests whose fixtures open a
plain ``redis.Redis`` on the URL themselves are not imported here.
"""

from __future__ import annotations

from tests.integration.test_app_hooks import (
    test_a_middleware_failure_is_a_handler_failure,
    test_hooks_get_the_workers_client_before_and_after_consuming,
    test_middleware_wraps_async_and_sync_handlers_in_order,
)
from tests.integration.test_dlq_archive import (
    test_export_purge_import_round_trips_byte_identical_fields,
    test_retention_evicts_by_age_and_length_and_warns_first,
)
from tests.integration.test_dlq_cli import (
    test_list_filters_pages_and_prints_json_lines,
    test_show_prints_fields_history_traceback_and_redacts,
    test_stats_group_by_fingerprint,
)
from tests.integration.test_dlq_replay import (
    test_canary_that_dies_again_stops_the_replay,
    test_filtered_replay_is_handled_by_the_running_worker,
    test_loop_guard_refuses_until_forced_and_dry_run_changes_nothing,
)

__all__ = [
    "test_a_middleware_failure_is_a_handler_failure",
    "test_canary_that_dies_again_stops_the_replay",
    "test_export_purge_import_round_trips_byte_identical_fields",
    "test_filtered_replay_is_handled_by_the_running_worker",
    "test_hooks_get_the_workers_client_before_and_after_consuming",
    "test_list_filters_pages_and_prints_json_lines",
    "test_loop_guard_refuses_until_forced_and_dry_run_changes_nothing",
    "test_middleware_wraps_async_and_sync_handlers_in_order",
    "test_retention_evicts_by_age_and_length_and_warns_first",
    "test_show_prints_fields_history_traceback_and_redacts",
    "test_stats_group_by_fingerprint",
]
