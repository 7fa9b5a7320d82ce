"""Endpoint churn through the real Envoy: a control plane started with `--endpoints-from kubernetes`
follows the stand-in API server's EndpointSlices while real runtimes come and go under load, and not one
request fails. A replica marked terminating is drained (no new requests) before it is stopped, as the
kubelet and the EndpointSlice controller do it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import loadgen
from tests.endpoints.cluster import KubePool

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubePool]:
    p = KubePool(Path(tmp_path_factory.mktemp("kubepool"))).start()
    try:
        yield p
    finally:
        p.stop()


def replica_of(pool: KubePool, name: str) -> str:
    spec = pool.specs[name]
    return f"{spec.region}/{spec.pool}/{spec.replica}"


def test_a_draining_replica_gets_no_new_requests(pool: KubePool) -> None:
    draining = sorted(pool.specs)[0]
    pool.states[draining] = "terminating"
    pool._apply_one(draining)
    pool.wait_gateway(lambda hosts: hosts == pool.expected())
    target = loadgen.Target(pool.platform.gateway_url("us-east-1") + "/v2/models/classifier/infer", pool.token())
    results = loadgen.run_sync(target, requests=60, concurrency=4)
    assert all(r.ok for r in results), [r.status for r in results]
    served = {r.replica for r in loadgen.served_by(pool.platform.served_by, results)}
    assert replica_of(pool, draining) not in served and served, served
    pool.states[draining] = "ready"
    pool._apply_one(draining)
    pool.wait_gateway(lambda hosts: hosts == pool.expected())


def test_scaling_and_a_rolling_restart_under_load_fail_no_request(pool: KubePool) -> None:
    reloaded_at = pool.platform.status()["last_reload"]["at"]
    load = pool.under_load(concurrency=4)
    try:
        added = pool.scale_up()
        pool.scale_down(sorted(n for n in pool.specs if n != added.name)[0])
        before_roll = set(pool.specs)
        pool.roll()
    finally:
        results = load.end()
    assert results and not load.failures(), load.failures()[:20]
    # Every new replica took traffic, and the old ones are gone from the gateway.
    served = {r.replica for r in loadgen.served_by(pool.platform.served_by, results)}
    assert {replica_of(pool, n) for n in pool.specs} <= served, served
    assert not before_roll & set(pool.specs)
    assert set(pool.gateway_hosts()) == {s.port for s in pool.specs.values()}
    # Published as endpoint changes alone: the config was never reloaded for them.
    status = pool.platform.status()
    assert status["last_reload"]["at"] == reloaded_at
    assert {r["name"] for r in status["replicas"]} == set(pool.specs)
