"""What the docs import from ``redrive`` is there (docs/monitoring.md: ``WorkerOptions``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import redrive

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_exported_name_exists() -> None:
    missing = [name for name in redrive.__all__ if not hasattr(redrive, name)]
    assert missing == []
    assert {"App", "AppContext", "WorkerOptions", "RetryPolicy", "Message"} <= set(redrive.__all__)


def test_worker_options_from_the_package_turn_metrics_off() -> None:
    options = redrive.WorkerOptions(metrics=False)
    assert options.metrics is False
    with pytest.raises(redrive.ConfigError, match="block_ms"):
        redrive.WorkerOptions(block_ms=0)


def test_names_the_docs_import_from_redrive_exist() -> None:
    imported = {
        name.strip()
        for page in PAGES
        for names in re.findall(r"from redrive import ([\w, ]+)", page.read_text())
        for name in names.split(",")
    }
    assert "WorkerOptions" in redrive.__all__
    assert imported, "the docs import nothing from redrive?"
    assert sorted(n for n in imported if n not in redrive.__all__ and n != "dlq") == []


def test_what_users_touch_is_exported() -> None:
    users_touch = {
        "App", "AppContext", "Hook", "context", "Message", "HandlerSpec", "HandlerOptions",
        "Middleware", "AsyncHandler", "Handler", "WorkerOptions", "publish", "publish_sync",
        "PublishError", "Body",
    }  # fmt: skip
    assert users_touch <= set(redrive.__all__)


def test_dlq_exports_its_library_not_the_cli_helpers() -> None:
    from redrive import dlq

    cli_helpers = {
        "parse_time", "parse_duration", "parse_rate", "check_output", "write_lines", "to_line",
        "TokenBucket", "operator", "Operation", "normalise_message",
    }  # fmt: skip
    assert cli_helpers.isdisjoint(dlq.__all__)
    assert [name for name in dlq.__all__ if not hasattr(dlq, name)] == []
    assert {"connect", "Filter", "list_dead_letters", "replay", "purge", "dlq_stats"} <= set(
        dlq.__all__
    )
