"""Each tenant's canary split holds statistically through the real Envoy."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from bench.loadgen import Target, infer_body, run_sync, served_by
from tests.e2e.conftest import RunningPlatform

pytestmark = pytest.mark.e2e

# tenant, region, model, version whose share is counted, its configured share
SPLITS = [
    ("acme", "us-east-1", "embedder", "v2", 0.10),
    ("initech", "eu-west-1", "embedder", "v2", 0.50),
    ("globex", "us-east-1", "classifier", "v2", 0.20),
]


@pytest.mark.parametrize(("tenant", "region", "model", "version", "share"), SPLITS,
                         ids=[f"{t}-{m}" for t, _, m, _, _ in SPLITS])
def test_split_holds(running: RunningPlatform, unthrottled, tenant: str, region: str, model: str,  # type: ignore[no-untyped-def]
                     version: str, share: float) -> None:
    n = 2000
    unthrottled(tenant)  # 2,000 requests as fast as the pool answers: far past the tenant's rate limit
    target = Target(running.url(region, f"/v2/models/{model}/infer"), running.token(tenant), infer_body(["hi"]))
    results = run_sync(target, requests=n, concurrency=8)
    assert all(r.ok for r in results), Counter((r.status, r.error) for r in results if not r.ok)
    seen = Counter(r.model_version for r in results)[version] / n
    # The bound for 90/10 is +-2.5 points (3.7 standard deviations at n=2,000); other splits get
    # at least 4 standard deviations, so a fair split fails about once in 15,000 runs.
    tolerance = max(0.025, 4 * math.sqrt(share * (1 - share) / n))
    assert abs(seen - share) <= tolerance, (seen, share, tolerance)
    # Both replicas of the pool serve the tenant, in its own region.
    replicas = {r.replica for r in served_by(running.platform.served_by, results)}
    assert len(replicas) == 2 and all(str(rep).startswith(region) for rep in replicas), replicas
