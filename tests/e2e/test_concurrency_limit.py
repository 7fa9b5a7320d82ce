"""Through the real Envoy: a tenant's concurrency quota is Envoy's circuit breaker on the tenant's
cluster, so a tenant firing more concurrent requests than its quota gets the excess refused by
Envoy (429 with ``Retry-After: 1`` and ``x-envoy-overloaded``) and the runtime never holds more than
the quota of its requests.
The quota caps the tenant's concurrency on the model, whichever versions its requests go to: the model
has two versions, each a subset of the tenant's one cluster (docs/design/0001).

One replica whose device holds each request for a second (``lexicon-simulated``, the fairness
scenario's platform), so every request of the burst is in flight at once."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.fairness_setup import INFER_PATH, MODEL, REGION, TENANTS, FairnessPlatform, fairness_platform
from bench.loadgen import infer_body
from tests.e2e.conftest import Reply, post

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

QUOTA = 2
SERVICE_MS = 1000.0
TENANT = TENANTS[0].id
VERSIONS = ("v1", "v2")  # the tenant splits 50/50


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FairnessPlatform]:
    with fairness_platform(tmp_path_factory.mktemp("concurrency"), service_ms=SERVICE_MS,
                           concurrency=QUOTA, versions=VERSIONS) as fp:
        yield fp


def metric(fp: FairnessPlatform, name: str, **labels: str) -> float:
    """One series of the replica's own Prometheus page (0 when it does not exist yet)."""
    with urllib.request.urlopen(fp.replica_metrics_url, timeout=5) as resp:
        for family in text_string_to_metric_families(resp.read().decode()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
    return 0.0


def served(fp: FairnessPlatform, outcome: str) -> int:
    return int(metric(fp, "fairshare_runtime_scheduled_requests_total", tenant=TENANT, outcome=outcome))


def burst(fp: FairnessPlatform, paths: list[str]) -> tuple[list[Reply], list[float]]:
    """Every request of `paths` at once; the replies and what the replica held of them meanwhile."""
    depths: list[float] = []
    stop = threading.Event()

    def watch() -> None:  # what the replica holds of the burst, sampled while it runs
        while not stop.is_set():
            depths.append(metric(fp, "fairshare_runtime_queue_depth"))
            stop.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    body, token = infer_body(["hello"]), fp.tokens[TENANT]
    base = fp.platform.gateway_url(REGION)
    try:
        with ThreadPoolExecutor(max_workers=len(paths)) as pool:
            replies: list[Reply] = list(pool.map(lambda path: post(base + path, body, token), paths))
    finally:
        stop.set()
        watcher.join()
    return replies, depths


@pytest.mark.parametrize("paths", [
    [INFER_PATH] * (2 * QUOTA + 3),  # the tenant's 50/50 split
    # Pinned, half to each version: per-version clusters would each have let 2 x QUOTA through.
    [f"/v2/models/{MODEL}/versions/{VERSIONS[i % 2]}/infer" for i in range(4 * QUOTA + 2)],
], ids=["split", "pinned-to-both-versions"])
def test_requests_past_the_concurrency_quota_are_refused_by_envoy(platform: FairnessPlatform,
                                                                   paths: list[str]) -> None:
    # Envoy holds QUOTA requests upstream and QUOTA more pending (the cluster's max_requests and
    # max_pending_requests) across both versions; everything past that is its to refuse, never the runtime's.
    before_ok, before_full = served(platform, "ok"), served(platform, "rejected_queue_full")
    replies, depths = burst(platform, paths)
    statuses = Counter(r.status for r in replies)
    refused = [r for r in replies if r.status != 200]
    assert statuses == {200: 2 * QUOTA, 429: len(paths) - 2 * QUOTA}, statuses
    assert all(r.headers.get("x-envoy-overloaded") == "true" for r in refused), [r.headers for r in refused]
    # The tenant's own limit, said as such (429 like its other limits, with when to retry), not Envoy's
    # "upstream connect error ... reset reason: overflow".
    assert all(r.headers.get("retry-after") == "1" for r in refused), [r.headers for r in refused]
    assert {json.dumps(r.body, sort_keys=True) for r in refused} == {json.dumps({
        "error": f"tenant {TENANT} has its concurrency quota of requests in flight: retry later "
                 "(after the seconds in Retry-After)", "code": 429}, sort_keys=True)}, refused[0].body
    # The runtime saw exactly the requests Envoy let through, QUOTA at a time at most, and refused none.
    assert served(platform, "ok") - before_ok == 2 * QUOTA
    assert served(platform, "rejected_queue_full") == before_full
    assert max(depths) == QUOTA, depths
    # Each request ran the version its entry (or its path) named.
    ok = [r for r in replies if r.status == 200]
    assert {r.body.get("model_version") for r in ok} <= set(VERSIONS)
