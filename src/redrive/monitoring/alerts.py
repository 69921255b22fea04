"""Alert hooks: persist each check's state in Redis; log and POST every change once.

The previous states live in the hash ``redrive:health:state`` (check id → state), so
repeated ``redrive health`` runs (a cron job, a probe every 10 s, two probes at once)
report a change once. The read-compare-write is one ``WATCH``/``MULTI`` transaction: of
two runs that see the same change, only the one whose ``EXEC`` succeeds owns it; the
other retries, now sees the new state, and reports nothing. A check seen for the first
time is compared with OK, so a first run reports only what is already wrong.

The change is claimed before the webhook is called: a webhook that stays down after its
retries loses that notification (logged as an error), rather than every later probe
repeating it. The webhook URL may carry a token in its path or query; it is only ever
logged through :func:`redact_webhook`.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import redis

from redrive.core.text import text
from redrive.monitoring.health import CheckResult, HealthReport
from redrive.monitoring.thresholds import State, WebhookConfig
from redrive.store import keys
from redrive.store.connection import redact_url

log = logging.getLogger("redrive.health")

_CLAIM_ATTEMPTS = 10


@dataclass(frozen=True, slots=True)
class Change:
    """A check whose state differs from the persisted one."""

    result: CheckResult
    previous: State

    def to_json(self, overall: State) -> dict[str, Any]:
        """The webhook body."""
        return {
            **self.result.to_json(),
            "previous": self.previous.value,
            "overall": overall.value,
            "at_ms": int(time.time() * 1000),
        }


def record_changes(client: redis.Redis, report: HealthReport) -> list[Change]:
    """Persist the report's states; return the changes this call owns (see module doc)."""
    for _ in range(_CLAIM_ATTEMPTS):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(keys.HEALTH_STATE)  # type: ignore[no-untyped-call]
                stored = {text(k): text(v) for k, v in pipe.hgetall(keys.HEALTH_STATE).items()}
                changes = [
                    Change(r, State(stored.get(r.id, State.OK.value)))
                    for r in report.results
                    if stored.get(r.id, State.OK.value) != r.state.value
                ]
                pipe.multi()
                if report.results:
                    pipe.hset(
                        keys.HEALTH_STATE, mapping={r.id: r.state.value for r in report.results}
                    )
                pipe.execute()
                return changes
            except redis.WatchError:
                continue  # another run changed the states first: look again
    raise redis.WatchError("health states kept changing under concurrent runs")


def announce(changes: list[Change], report: HealthReport, webhook: WebhookConfig | None) -> int:
    """Log every change and POST it to ``webhook``; return how many POSTs succeeded."""
    delivered = 0
    for change in changes:
        r = change.result
        level = logging.INFO if r.state is State.OK else logging.WARNING
        log.log(level, "health %s %s: %s -> %s (%s)", r.check, r.subject,
                change.previous.value, r.state.value, r.message)  # fmt: skip
        if webhook is not None and post_json(webhook, change.to_json(report.state)):
            delivered += 1
    return delivered


def post_json(webhook: WebhookConfig, body: dict[str, Any]) -> bool:
    """POST ``body``; retry transport errors and 5xx with backoff; never log the URL raw."""
    data = json.dumps(body).encode()
    shown = redact_webhook(webhook.url)
    for attempt in range(webhook.retries + 1):
        request = urllib.request.Request(
            webhook.url, data=data, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "redrive-health"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=webhook.timeout_seconds) as reply:
                reply.read()
            return True
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # the receiver refused this body: sending it again won't help
                log.error("webhook %s refused the alert: HTTP %d", shown, exc.code)
                return False
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            problem = type(getattr(exc, "reason", exc)).__name__
        if attempt < webhook.retries:
            time.sleep(min(5.0, 0.2 * 2**attempt))
    log.error("webhook %s failed after %d attempts (%s)", shown, webhook.retries + 1, problem)
    return False


def redact_webhook(url: str) -> str:
    """``scheme://host[:port]/…``: webhook tokens hide in paths and queries as well as in
    user-info, so only the host is shown (``https://hooks.example.com/…``)."""
    scheme, sep, rest = redact_url(url).partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    more = len(rest) > len(rest.split("/", 1)[0]) or "?" in rest
    return f"{scheme}{sep}{host}" + ("/…" if more else "")
