"""``redrive.testing.running`` and ``until_idle``, unchanged, against a local Redis Cluster.

``until_idle`` reads each handler's keys in one MULTI: on a cluster that works because
they share the stream's hash slot, which these runs check.
"""

from __future__ import annotations

from tests.integration.test_testing_running import (
    test_running_returns_once_the_consumer_is_registered_and_stops_on_exit,
    test_the_timeout_names_a_message_still_in_the_handler,
    test_until_idle_sees_unread_entries_of_an_app_that_is_not_running,
    test_until_idle_waits_for_the_retry_of_a_handler_that_fails_once,
    test_without_wait_scheduled_it_returns_while_a_retry_waits_for_later,
)

__all__ = [
    "test_running_returns_once_the_consumer_is_registered_and_stops_on_exit",
    "test_the_timeout_names_a_message_still_in_the_handler",
    "test_until_idle_sees_unread_entries_of_an_app_that_is_not_running",
    "test_until_idle_waits_for_the_retry_of_a_handler_that_fails_once",
    "test_without_wait_scheduled_it_returns_while_a_retry_waits_for_later",
]
