"""The exactly-once check of an idempotent scenario: effects against runs, per message.

In a scenario with ``[handler] idempotent = true`` every success returns its effect
(``HINCRBY redrive:sim:effect:{S} <id> 1``) to be applied with the done mark and the ack
(:mod:`redrive.simulate.ledger`), while the runs log is written by the handler itself.
So for each produced message:

- a message that succeeded must have its effect applied **exactly once**, however many
  times its handler ran (the at-least-once runs underneath: a worker killed after its
  run, a SIGSTOP past the lease, a lost reply);
- a dead-lettered one must have none;
- an effect counted twice, a success without its effect, or an effect on a dead letter
  is a defect, and so is an effect of a message the producer never sent.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from redrive.simulate.ledger import effect_key
from redrive.verify import read_ledger

SUCCEEDED = "succeeded"
#: How many ids of each defect the JSON report lists.
SHOWN = 100


@dataclass(frozen=True, slots=True)
class EffectAccount:
    """Effects of one stream's messages: what took effect, what ran, and the defects."""

    once: int  # succeeded, effect applied exactly once
    dead_without: int  # dead-lettered, no effect: as it must be
    double: tuple[str, ...]  # effect applied more than once
    missing: tuple[str, ...]  # a run succeeded, nothing pending, no dead letter, no effect
    on_dead: tuple[str, ...]  # dead-lettered and its effect applied
    unexpected: tuple[str, ...]  # effects of ids the producer never sent
    repeated_runs: int  # messages whose handler finished more than once
    extra_runs: int  # finished runs beyond each message's first
    absorbed: int  # of the repeated ones, those whose effect is still exactly one

    @property
    def defects(self) -> int:
        """Double effects, missing effects, effects on dead letters, unexpected: must be 0."""
        return len(self.double) + len(self.missing) + len(self.on_dead) + len(self.unexpected)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (defects as counts, with their first ids)."""
        return {
            "once": self.once,
            "dead_without_effect": self.dead_without,
            "double": len(self.double),
            "missing": len(self.missing),
            "on_dead": len(self.on_dead),
            "unexpected": len(self.unexpected),
            "repeated_runs": self.repeated_runs,
            "extra_runs": self.extra_runs,
            "absorbed": self.absorbed,
            "defect_ids": {
                "double": list(self.double[:SHOWN]),
                "missing": list(self.missing[:SHOWN]),
                "on_dead": list(self.on_dead[:SHOWN]),
                "unexpected": list(self.unexpected[:SHOWN]),
            },
        }


def count_effects(
    client: redis.Redis,
    stream: str,
    outcomes: Mapping[str, Sequence[str]],
    produced: Collection[str],
    unsettled: Collection[str],
) -> EffectAccount:
    """Check every produced message's effect counter against its outcomes.

    ``outcomes`` maps an origin id to its recorded outcomes (``succeeded`` for each
    finished run, else a dead-letter reason); ``unsettled`` holds the ids still pending
    or retrying, which the main accounting reports.
    """
    applied = read_ledger(client, effect_key(stream))
    once = dead_without = absorbed = repeated = extra = 0
    double: list[str] = []
    missing: list[str] = []
    on_dead: list[str] = []
    for entry_id in produced:
        found = outcomes.get(entry_id, ())
        runs = sum(1 for reason in found if reason == SUCCEEDED)
        dead = len(found) > runs
        effect = applied.get(entry_id, 0)
        repeated += runs > 1
        extra += max(0, runs - 1)
        absorbed += runs > 1 and effect == 1
        if effect > 1:
            double.append(entry_id)
        elif effect == 1:
            if dead:
                on_dead.append(entry_id)
            else:
                once += 1
        elif dead:
            dead_without += 1
        elif runs and entry_id not in unsettled:
            missing.append(entry_id)
    wanted = set(produced)
    return EffectAccount(
        once=once, dead_without=dead_without, double=tuple(sorted(double)),
        missing=tuple(sorted(missing)), on_dead=tuple(sorted(on_dead)),
        unexpected=tuple(sorted(i for i in applied if i not in wanted)),
        repeated_runs=repeated, extra_runs=extra, absorbed=absorbed,
    )  # fmt: skip
