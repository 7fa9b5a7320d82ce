"""The platform namespace's NetworkPolicies, evaluated as Kubernetes does (a pod selected by any policy of a
direction admits only what some rule of those allows; rules add up): every pod that serves tenants is in it,
so it denies by default both ways and allows exactly the flows the platform needs: DNS; clients to the
public gateway; the gateways to the control plane and the runtimes; the control plane to Redis, the runtimes'
admin port, its peers and HTTPS (API server, AWS); the runtimes to HTTPS (S3, STS, Secrets Manager) and
nothing else: no other pod, no plain HTTP out, not the node's metadata service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import by_kind, template
from tests.chart.netpol import Peer, allowed, pod
from tests.chart.test_cells import _values as cell_values_file

REGION = "region:us-east-1"


DNS = Peer("kube-system", {"k8s-app": "kube-dns"})
S3 = Peer(ip="52.216.0.10")
METADATA = Peer(ip="169.254.169.254")
CLIENT = Peer(ip="203.0.113.7")
OTHER_NS_POD = Peer("tenant-acme", {"app": "x"})


@pytest.fixture
def m(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return rendered[REGION]


def test_every_pod_is_denied_both_ways_by_default(m: list[dict[str, Any]]) -> None:
    (deny,) = [p for p in by_kind(m, "NetworkPolicy") if p["metadata"]["name"] == "fairshare-default-deny"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_the_runtimes_reach_aws_over_https_and_nothing_else(m: list[dict[str, Any]]) -> None:
    runtime = pod(m, "fairshare-pool-cpu-general")
    assert allowed(m, runtime, S3, 443)
    assert allowed(m, runtime, DNS, 53, "UDP") and allowed(m, runtime, DNS, 53, "TCP")
    assert not allowed(m, runtime, S3, 80)
    assert not allowed(m, runtime, METADATA, 80) and not allowed(m, runtime, METADATA, 443)
    for name in ("fairshare-control-plane", "fairshare-redis", "fairshare-gateway", "fairshare-pool-gpu-small"):
        for port in (18000, 18001, 6379, 8080, 8081):
            assert not allowed(m, runtime, pod(m, name), port), (name, port)
    assert not allowed(m, runtime, OTHER_NS_POD, 443)


def test_the_platform_flows_are_allowed(m: list[dict[str, Any]]) -> None:
    gateway, cp, redis = pod(m, "fairshare-gateway"), pod(m, "fairshare-control-plane"), pod(m, "fairshare-redis")
    runtime = pod(m, "fairshare-pool-cpu-general")
    listener = next(c["containerPort"] for d in by_kind(m, "Deployment") if d["metadata"]["name"] == "fairshare-gateway"
                    for c in d["spec"]["template"]["spec"]["containers"][0]["ports"])
    assert allowed(m, CLIENT, gateway, listener)
    assert allowed(m, gateway, cp, 18000) and allowed(m, gateway, cp, 18002)
    assert allowed(m, gateway, runtime, 8080) and not allowed(m, gateway, runtime, 8081)
    assert allowed(m, cp, redis, 6379) and allowed(m, cp, runtime, 8081) and allowed(m, cp, cp, 18001)
    assert allowed(m, cp, Peer(ip="10.0.1.20"), 443)  # the API server's endpoint in the VPC; AWS
    assert not allowed(m, cp, METADATA, 80) and not allowed(m, cp, S3, 80)
    assert not allowed(m, redis, S3, 443) and not allowed(m, gateway, redis, 6379)
    assert not allowed(m, CLIENT, runtime, 8080) and not allowed(m, CLIENT, cp, 18000)
    for src in (gateway, cp, redis):
        assert allowed(m, src, DNS, 53, "UDP"), src


def test_with_cells_clients_reach_the_front_tier_only(helm_bin: str, tmp_path: Path) -> None:
    m = template(helm_bin, cell_values_file(tmp_path, "four", {"shared": 4}))
    front, cell = pod(m, "fairshare-gateway-front"), pod(m, "fairshare-cell-c0")
    runtime, cp = pod(m, "fairshare-pool-cpu-general"), pod(m, "fairshare-control-plane")
    port = next(d for d in by_kind(m, "Deployment") if d["metadata"]["name"] == "fairshare-cell-c0")[
        "spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert allowed(m, CLIENT, front, port)
    assert allowed(m, front, cell, port) and allowed(m, front, cp, 18000)
    assert allowed(m, cell, runtime, 8080) and allowed(m, cell, cp, 18000)
    assert not allowed(m, CLIENT, cell, port) and not allowed(m, pod(m, "fairshare-cell-c1"), cell, port)
