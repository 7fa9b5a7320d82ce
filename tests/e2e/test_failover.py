"""Failover inside residency through the real Envoys and runtimes (docs/design/0004): the US replicas of
a pool are killed under load; the tenant allowed in the EU with failover there keeps getting 200s served
in eu-west-1, the US-only tenant gets the gateway's 503 naming why and never reaches the EU, and both
are served in the US again once it recovers."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cluster_failover import EU, HOMEBODY, OWN_MODEL, ROAMER, US, FailoverPlatform, Load, failover_platform
from bench.loadgen import infer_body
from inference_images.runtime import gateway as contract
from tests.e2e.conftest import Reply, eventually, post, served_by
from xds_server.compiler.failover import SERVED_REGION_HEADER

pytestmark = pytest.mark.e2e
# Both tenants also bring acme's example ticket router as their own model (docs/design/0004, own models).
ROUTER = Path(__file__).resolve().parents[2] / "config" / "models" / "acme" / "ticket-router" / "1" / "model.onnx"
FEATURES = json.loads((ROUTER.parents[1] / "features.json").read_text())


@pytest.fixture(scope="module")
def fp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FailoverPlatform]:
    with failover_platform(Path(tmp_path_factory.mktemp("failover")), replicas=1, own_model=ROUTER) as running:
        yield running


def served(fp: FailoverPlatform, tenant: str) -> tuple[int, str | None, str]:
    reply = post(fp.target(tenant).url, infer_body(["fine"]), fp.token(tenant))
    return reply.status, region_of(fp, reply), str(reply.body.get("error", ""))


def region_of(fp: FailoverPlatform, reply: Reply) -> str | None:
    """The region of the replica that answered, from the gateway's access log (never on the response)."""
    assert contract.REPLICA_HEADER not in reply.headers
    return (served_by(fp.platform, reply) or "").split("/")[0] or None


def test_home_pool_lost_fails_over_inside_residency_and_returns_home(fp: FailoverPlatform) -> None:
    assert served(fp, ROAMER)[:2] == (200, US)
    assert served(fp, HOMEBODY)[:2] == (200, US)
    eu_homebody = fp.runtime_scheduled(EU, HOMEBODY)
    with Load({ROAMER: fp.target(ROAMER), HOMEBODY: fp.target(HOMEBODY)}, fp.platform, concurrency=1) as load:
        assert eventually(lambda: len(load.since(0.0, HOMEBODY)) > 10, timeout=30)
        killed = time.perf_counter()
        fp.kill(US)
        # roamer: served in the EU, and the EU runtime accepted it, so it carried eu-west-1.
        assert eventually(lambda: sum(s.region == EU and s.status == 200 for s in load.since(killed, ROAMER)) >= 20,
                          timeout=30)
        reply = post(fp.target(ROAMER).url, infer_body(["fine"]), fp.token(ROAMER))
        assert (reply.status, reply.headers[SERVED_REGION_HEADER]) == (200, EU)
        # homebody: the gateway's own 503, with the reason.
        status, region, error = served(fp, HOMEBODY)
        assert (status, region) == (503, None)
        assert error == f"no healthy upstream in {US} and no failover region allowed for tenant {HOMEBODY}"
        restarting = time.perf_counter()
        fp.restart(US)
        ready = time.perf_counter()
        assert eventually(lambda: [s.region for s in load.since(ready, ROAMER)][-20:] == [US] * 20, timeout=30)
        assert eventually(lambda: [s.status for s in load.since(ready, HOMEBODY)][-5:] == [200] * 5, timeout=30)
    # Only what was in flight at the kill may fail (one request per worker), and none while it was down.
    outage = [s for s in load.samples if s.tenant == ROAMER and killed <= s.at < restarting]
    assert outage and sum(s.status != 200 for s in outage) <= 1
    assert all(s.region == EU for s in outage[1:] if s.status == 200)
    # Not one homebody request reached the EU: no response from there, none in its runtime's scheduler.
    assert {s.region for s in load.samples if s.tenant == HOMEBODY} <= {US, None}
    assert fp.runtime_scheduled(EU, HOMEBODY) == eu_homebody
    assert any(s.status == 503 for s in load.samples if s.tenant == HOMEBODY and killed <= s.at < restarting)


def test_eu_runtime_still_refuses_a_request_routed_for_the_us(fp: FailoverPlatform) -> None:
    eu = next(r for r in fp.replicas(EU))
    reply = post(f"http://{fp.platform.opts.host}:{eu.port}/v2/models/classifier/infer", infer_body(["fine"]),
                 headers={contract.TENANT_HEADER: ROAMER, contract.REGION_HEADER: US})
    assert reply.status in (403, 421) and "refusing to process data outside its region" in reply.body["error"]


def own_served(fp: FailoverPlatform, tenant: str) -> tuple[int, str | None, str | None, str]:
    """(status, region of the replica that answered, the served-region header, error) of one call to the
    tenant's own model."""
    body = json.dumps({"inputs": [{"name": "features", "shape": [1, len(FEATURES["vocabulary"])],
                                   "datatype": "FP32", "data": [0.0] * len(FEATURES["vocabulary"])}]}).encode()
    reply = post(fp.platform.gateway_url(US) + f"/v2/models/{OWN_MODEL}/infer", body, fp.token(tenant))
    return reply.status, region_of(fp, reply), reply.headers.get(SERVED_REGION_HEADER), str(reply.body.get("error", ""))


def own_loaded(fp: FailoverPlatform, region: str, tenant: str) -> bool:
    """Whether a replica of `region` holds the tenant's own model (its repository index, admin port)."""
    for replica in fp.replicas(region):
        req = urllib.request.Request(f"http://{fp.platform.opts.host}:{replica.admin_port}/v2/repository/index",
                                     data=b"{}", method="POST", headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            if any(row["name"] == f"{tenant}:{OWN_MODEL}" and row["state"] == "ready" for row in json.load(resp)):
                return True
    return False


def test_own_model_fails_over_inside_residency_and_returns_home(fp: FailoverPlatform) -> None:
    # Home: both served in the US; the failover tenant's through its chain's clusters (served region set).
    assert own_served(fp, ROAMER)[:3] == (200, US, US)
    assert own_served(fp, HOMEBODY)[:3] == (200, US, None)
    assert not own_loaded(fp, EU, ROAMER)
    eu_homebody = fp.runtime_scheduled(EU, HOMEBODY)
    fp.kill(US)
    try:
        # roamer's own model: served in the EU, whose runtime loaded it (the request carried eu-west-1).
        assert eventually(lambda: own_served(fp, ROAMER)[:3] == (200, EU, EU), timeout=30)
        assert own_loaded(fp, EU, ROAMER)
        # homebody's: the gateway's own 503 with the reason, never the EU.
        status, region, _, error = own_served(fp, HOMEBODY)
        assert (status, region) == (503, None)
        assert error == f"no healthy upstream in {US} and no failover region allowed for tenant {HOMEBODY}"
        assert not own_loaded(fp, EU, HOMEBODY)
        assert fp.runtime_scheduled(EU, HOMEBODY) == eu_homebody
    finally:
        fp.restart(US)
    assert eventually(lambda: own_served(fp, ROAMER)[:3] == (200, US, US), timeout=30)
    assert eventually(lambda: own_served(fp, HOMEBODY)[:2] == (200, US), timeout=30)
