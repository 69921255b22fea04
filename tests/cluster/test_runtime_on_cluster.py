"""The consumer runtime's integration tests, unchanged, against a local Redis Cluster.

Importing the test functions collects them here, where ``redis_url`` (tests/cluster/
conftest.py) is the cluster's URL: retries, dead letters, bad input, lost groups,
dropped connections, the breaker and leases all run on a 3-master cluster. Left out:
tests that need to kill or restart one ``redis-server``, and the fence test, whose
hand-written keys (``<stream>:due``) do not share the stream's hash tag.
"""

from __future__ import annotations

import pytest

from tests.integration.test_bad_input import (
    test_a_failing_message_does_not_delay_the_others,
    test_dead_letter_keeps_non_utf8_bytes,
    test_forged_metadata_on_the_source_stream_changes_nothing,
    test_poison_and_permanent_errors_skip_retries,
    test_sync_handlers_run_in_threads,
)
from tests.integration.test_idempotency import (
    test_a_duplicate_message_is_acked_without_running,
    test_a_failed_first_attempt_is_retried_and_succeeds,
    test_a_replay_of_a_message_whose_key_is_done_is_skipped_unless_told,
    test_an_effect_on_a_key_of_the_wrong_type_dead_letters_with_nothing_applied,
    test_effects_are_applied_with_the_ack_and_once_per_key,
    test_publishing_again_with_the_same_dedupe_ids_adds_nothing,
)
from tests.integration.test_idle import test_an_idle_worker_stops_at_once_despite_a_long_block
from tests.integration.test_loop_isolation import (
    test_a_failing_loop_of_one_handler_stops_neither_it_nor_the_others,
    test_a_stream_deleted_under_a_blocked_read_is_read_again,
)
from tests.integration.test_resilience import (
    test_killed_connections_lose_nothing,
    test_long_handler_keeps_its_lease,
    test_lost_group_is_recreated_at_the_backlog_with_a_warning,
    test_open_breaker_pauses_reading_instead_of_burning_retries,
)
from tests.integration.test_retries import (
    test_a_retry_that_succeeds_is_acked_once,
    test_gaps_double_and_fourth_failure_is_dead_lettered,
)
from tests.integration.test_worker_options import (
    test_a_message_larger_than_the_budget_still_runs,
    test_large_messages_are_read_ahead_within_the_byte_budget,
)

__all__ = [
    "test_a_duplicate_message_is_acked_without_running",
    "test_a_failed_first_attempt_is_retried_and_succeeds",
    "test_a_failing_loop_of_one_handler_stops_neither_it_nor_the_others",
    "test_a_failing_message_does_not_delay_the_others",
    "test_a_message_larger_than_the_budget_still_runs",
    "test_a_replay_of_a_message_whose_key_is_done_is_skipped_unless_told",
    "test_a_retry_that_succeeds_is_acked_once",
    "test_a_stream_deleted_under_a_blocked_read_is_read_again",
    "test_an_effect_on_a_key_of_the_wrong_type_dead_letters_with_nothing_applied",
    "test_an_idle_worker_stops_at_once_despite_a_long_block",
    "test_dead_letter_keeps_non_utf8_bytes",
    "test_effects_are_applied_with_the_ack_and_once_per_key",
    "test_forged_metadata_on_the_source_stream_changes_nothing",
    "test_gaps_double_and_fourth_failure_is_dead_lettered",
    "test_killed_connections_lose_nothing",
    "test_large_messages_are_read_ahead_within_the_byte_budget",
    "test_long_handler_keeps_its_lease",
    "test_lost_group_is_recreated_at_the_backlog_with_a_warning",
    "test_open_breaker_pauses_reading_instead_of_burning_retries",
    "test_poison_and_permanent_errors_skip_retries",
    "test_publishing_again_with_the_same_dedupe_ids_adds_nothing",
    "test_sync_handlers_run_in_threads",
]

# redis-py's cluster client leaks connections after a dead node (conftest.py,
# collect_redis_py_leaks): collected after each test here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.usefixtures("collect_redis_py_leaks"),
]
