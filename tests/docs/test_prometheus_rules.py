"""deploy/prometheus/alerts.yml: valid rules, unit-tested by promtool, thresholds = health's.

promtool comes from Debian's ``prometheus`` package (.ci/run installs it); without it the
promtool tests skip and say so, the threshold comparison still runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from redrive.monitoring.thresholds import DEFAULTS, HealthConfig

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed: apt-get install prometheus (as .ci/run does)"
)

#: health check -> (its warning alert, its critical alert or None)
ALERTS = {
    "dlq_size": ("RedriveDeadLettersWaiting", "RedriveDeadLettersPilingUp"),
    "dlq_growth": ("RedriveDeadLetterGrowth", "RedriveDeadLetterSurge"),
    "error_rate": ("RedriveHandlerErrors", "RedriveHandlerErrorsHigh"),
    "lag": ("RedriveConsumerLag", "RedriveConsumerLagHigh"),
    "oldest_pending_age": ("RedriveStuckPending", "RedriveStuckPendingLong"),
    "dead_consumers": ("RedriveDeadConsumers", "RedriveDeadConsumersMany"),
    "open_breakers": ("RedriveBreakerOpen", None),
}


def expressions() -> dict[str, str]:
    """alert name -> its expr (one line, however it is folded in the file)."""
    found: dict[str, str] = {}
    for block in re.split(r"^\s*- alert: ", RULES.read_text(), flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        expr = re.search(r"^\s*expr: (?:>-\n)?(.*?)^\s*(?:for|labels):", body, re.M | re.S)
        assert expr is not None, f"no expr in {name}"
        found[name.strip()] = " ".join(expr.group(1).split())
    return found


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "16 rules found" in done.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    # Each alert fires at its threshold with its severity and labels, not below it.
    done = subprocess.run(
        [str(PROMTOOL), "test", "rules", "alerts.test.yml"],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_health_check_has_its_alerts_at_the_same_thresholds() -> None:
    exprs = expressions()
    assert set(DEFAULTS) == set(ALERTS)
    for check, (warn_alert, crit_alert) in ALERTS.items():
        limit = DEFAULTS[check]
        assert limit.warn is not None
        if crit_alert is None:
            assert limit.crit is None
            assert exprs[warn_alert].endswith(f">= {limit.warn:g}"), exprs[warn_alert]
            continue
        assert limit.crit is not None
        assert f">= {limit.warn:g} < {limit.crit:g}" in exprs[warn_alert], exprs[warn_alert]
        assert f">= {limit.crit:g}" in exprs[crit_alert], exprs[crit_alert]
        assert f"< {limit.crit:g}" not in exprs[crit_alert]
    min_runs = HealthConfig().error_rate_min_runs
    for alert in ALERTS["error_rate"]:
        assert alert is not None and exprs[alert].endswith(f">= {min_runs}")
    assert exprs["RedriveRedisUnreachable"] == "redrive_up == 0"
