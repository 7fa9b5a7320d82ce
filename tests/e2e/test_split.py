"""Each tenant's canary split holds statistically through the real Envoy."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.loadgen import Target, infer_body, run_sync
from tests.e2e.conftest import RunningPlatform

pytestmark = pytest.mark.e2e


def test_acme_embedder_split_90_10_holds(running: RunningPlatform) -> None:
    target = Target(running.url("us-east-1", "/v2/models/embedder/infer"), running.token("acme"), infer_body(["hi"]))
    results = run_sync(target, requests=2000, concurrency=8)
    assert all(r.ok for r in results), Counter((r.status, r.error) for r in results if not r.ok)
    share_v2 = Counter(r.model_version for r in results)["v2"] / len(results)
    # 10% +- 2.5 points: about 3.7 standard deviations of a fair 90/10 coin over 2,000 draws.
    assert 0.075 <= share_v2 <= 0.125, share_v2
    # Both replicas of the pool serve the tenant.
    assert len({r.replica for r in results}) == 2
