"""Seeded e-commerce load with a mix of bad input, each message with a known outcome.

Every message carries a producer-chosen unique id in field ``sim-id`` (``o-000042`` for
the 42nd order): the producer knows it before XADD, so even a send whose reply was lost
(indeterminate) can be looked for in the stream afterwards.

=================  ==========================================  =======================
kind               what is sent                                 outcome without faults
=================  ==========================================  =======================
ok                 a valid order or payment                     succeeded
timeout_then_ok    ``simulate.timeout_first`` = 1 or 2          succeeded after retries
timeout_exhausted  ``simulate.timeout_first`` = 10              max_retries_exceeded
declined           ``simulate.decline`` = true                  max_retries_exceeded
malformed_json     a body cut in half                           poison
non_utf8           bytes that are not UTF-8                     poison
missing_field      an ``*_id`` field removed                    permanent_error
wrong_type         the amount as a string ("12.50")             permanent_error
oversized          a valid body padded past the payload cap     payload_too_large
forged_meta        valid, plus producer-written ``redrive-*``    succeeded (ignored)
=================  ==========================================  =======================
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from redrive.core import fields as f
from redrive.errors import ConfigError
from redrive.examples.ecommerce_traffic import shaped_body

ORDERS = "ecommerce:orders"
PAYMENTS = "ecommerce:payments"
SIM_ID = "sim-id"
KIND = "sim-kind"

#: kind → outcome expected when no fault is injected.
EXPECTED: dict[str, str] = {
    "ok": "succeeded",
    "timeout_then_ok": "succeeded",
    "timeout_exhausted": "max_retries_exceeded",
    "declined": "max_retries_exceeded",
    "malformed_json": "poison",
    "non_utf8": "poison",
    "missing_field": "permanent_error",
    "wrong_type": "permanent_error",
    "oversized": "payload_too_large",
    "forged_meta": "succeeded",
}
DEFAULT_MIX: dict[str, float] = {
    "ok": 0.85,
    "timeout_then_ok": 0.05,
    "timeout_exhausted": 0.005,
    "declined": 0.01,
    "malformed_json": 0.02,
    "non_utf8": 0.01,
    "missing_field": 0.02,
    "wrong_type": 0.02,
    "oversized": 0.002,
    "forged_meta": 0.013,
}
FORGED = {
    f.ATTEMPT.key: b"99",
    f.REASON.key: b"poison",
    f.ORIGIN_ID.key: b"0-1",
    f.DUE_MS.key: b"0",
}


@dataclass(frozen=True, slots=True)
class Planned:
    """One message to publish: its stream, unique id, kind and fields."""

    stream: str
    sim_id: str
    kind: str
    fields: dict[bytes, bytes]


def check_mix(mix: Mapping[str, float]) -> dict[str, float]:
    """Validate a kind → weight table (unknown kinds or negative weights are refused)."""
    unknown = set(mix) - set(EXPECTED)
    if unknown:
        raise ConfigError(f"unknown input kinds {sorted(unknown)}: use {sorted(EXPECTED)}")
    if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ConfigError("input weights must be >= 0 and not all 0")
    return {k: float(v) for k, v in mix.items()}


class TrafficGenerator:
    """Yields planned messages, 60 % orders and 40 % payments, kinds drawn by weight.

    ``oversize_bytes`` is the size of an oversized body (above the workers' cap).
    """

    def __init__(
        self,
        *,
        seed: int,
        prefix: str = "",
        mix: Mapping[str, float] | None = None,
        oversize_bytes: int = 80_000,
    ) -> None:
        self.rng = random.Random(seed)
        self.prefix = prefix
        weights = check_mix(mix or DEFAULT_MIX)
        self.kinds = list(weights)
        self.weights = list(weights.values())
        self.oversize_bytes = oversize_bytes
        self.counts = {ORDERS: 0, PAYMENTS: 0}

    def take(self, count: int) -> Iterator[Planned]:
        """The next ``count`` messages."""
        for _ in range(count):
            yield self.next()

    def next(self) -> Planned:
        """The next message."""
        stream = ORDERS if self.rng.random() < 0.6 else PAYMENTS
        n = self.counts[stream]
        self.counts[stream] += 1
        kind = self.rng.choices(self.kinds, weights=self.weights)[0]
        sim_id = f"{'o' if stream == ORDERS else 'p'}-{n:07d}"
        fields = {SIM_ID.encode(): sim_id.encode(), KIND.encode(): kind.encode()}
        fields[b"data"] = self._body(stream, n, kind)
        if kind == "forged_meta":
            fields.update(FORGED)
        return Planned(self.prefix + stream, sim_id, kind, fields)

    def _body(self, stream: str, n: int, kind: str) -> bytes:
        rng = self.rng
        body = shaped_body(stream, n, kind, rng, digits=7)
        if kind == "oversized":
            body["note"] = "x" * self.oversize_bytes
        text = json.dumps(body, separators=(",", ":")).encode()
        if kind == "malformed_json":
            return text[: len(text) // 2]
        if kind == "non_utf8":
            return b'{"order_id": "\xff\xfe' + text[:8] + b'"}'
        return text
