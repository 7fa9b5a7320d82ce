"""PII counters, by tenant, entity type, action and stage. Counts only: no value ever reaches a label."""

from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from inference_images.runtime.pii.entities import Entity

REDACTED = "redacted"
PSEUDONYMISED = "pseudonymised"
BLOCKED = "blocked"
REQUEST = "request"
RESPONSE = "response"


class PiiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # Series are bounded by the tenants routed to this replica times six types, three actions, two stages.
        self.findings = PromCounter(
            "fairshare_runtime_pii_findings",
            "PII entities found in inference traffic, by tenant, entity type, action (redacted, pseudonymised "
            "or blocked) "
            "and stage (request or response).",
            ["tenant", "entity", "action", "stage"],
            registry=registry,
        )

    def record(self, tenant: str, counts: Counter[Entity], action: str, stage: str) -> None:
        for entity, n in counts.items():
            if n:
                self.findings.labels(tenant, entity.value, action, stage).inc(n)
