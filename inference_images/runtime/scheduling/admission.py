"""Bounded per-tenant queues: how many requests a tenant may have waiting here, and when to come back.

The bound comes from the gateway (``x-fairshare-max-queue``, which the compiler sets from the tenant's
concurrency quota); without it a default applies. Past the bound the request is refused at once with
429 and a ``Retry-After`` estimate, so a flooding tenant meets back-pressure instead of latency that
grows without bound, and the memory a replica spends on queues stays bounded per tenant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_MAX_QUEUE = 64
# Retry-After is in whole seconds; never tell a client to come back at once (it would just spin).
_MIN_RETRY_AFTER_S = 1


@dataclass(frozen=True, slots=True)
class Admission:
    default_max_queue: int = DEFAULT_MAX_QUEUE

    def __post_init__(self) -> None:
        if self.default_max_queue < 1:
            raise ValueError(f"default max queue must be at least 1, got {self.default_max_queue}")

    def limit(self, requested: int | None) -> int:
        """The tenant's bound: the gateway's value when it sent a usable one, else the default."""
        return requested if requested is not None and requested >= 1 else self.default_max_queue

    @staticmethod
    def retry_after(queued: int, seconds_per_request: float, share: float) -> int:
        """Whole seconds until the tenant's queue has drained at its share of the worker (0 < share <= 1)."""
        drain = queued * seconds_per_request / max(share, 1e-6)
        return max(_MIN_RETRY_AFTER_S, math.ceil(drain))


def parse_queue_bound(raw: str | None) -> int | None:
    """The gateway's ``x-fairshare-max-queue`` value; None when absent. ValueError names what is wrong."""
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"x-fairshare-max-queue header must be a positive integer, got {raw[:32]!r}")
    return value


def parse_deadline(raw: str | None, now: float) -> float | None:
    """When (on ``now``'s clock) the gateway stops waiting, from ``x-envoy-expected-rq-timeout-ms``.

    Envoy's own header: a value we cannot read is ignored (no deadline) rather than refused."""
    if not raw:
        return None
    try:
        ms = float(raw)
    except ValueError:
        return None
    return now + ms / 1000.0 if math.isfinite(ms) and ms > 0 else None
