"""Prometheus metrics of the rate-limit service, in their own registry (served at the control plane's
/metrics). Per tenant: what was allowed, limited, or would have been limited in shadow mode; and what
an outage of the backend did to each tenant's requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Outcome:
    ALLOWED = "allowed"
    LIMITED = "limited"
    SHADOW_LIMITED = "shadow_limited"
    FAILURE_OPEN = "failure_open"  # backend down, tier fails open: served unchecked
    FAILURE_CLOSED = "failure_closed"  # backend down, tier fails closed: refused


@dataclass
class RateLimitMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.decisions = Counter(
            "fairshare_ratelimit_decisions", "Rate-limit decisions per tenant, limit and outcome",
            ["tenant", "limit", "outcome"], registry=self.registry)
        self.settled_tokens = Counter(
            "fairshare_ratelimit_settled_tokens", "Real token cost charged after responses, per tenant",
            ["tenant"], registry=self.registry)
        self.lost_settlements = Counter(
            "fairshare_ratelimit_lost_settlements", "Settlements not applied because the backend was down",
            ["tenant"], registry=self.registry)
        self.latency = Histogram(
            "fairshare_ratelimit_decision_seconds", "Time to decide one ShouldRateLimit call", ["backend"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1),
            registry=self.registry)
        self.backend_up = Gauge(
            "fairshare_ratelimit_backend_up", "1 while the counters' backend answers", ["backend"],
            registry=self.registry)
        self.table_tenants = Gauge(
            "fairshare_ratelimit_limit_table_tenants", "Tenants in the published limit table",
            registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
