"""The platform namespace's NetworkPolicies, evaluated as Kubernetes does (a pod selected by any policy of a
direction admits only what some rule of those allows; rules add up): every pod that serves tenants is in it,
so it denies by default both ways and allows exactly the flows the platform needs: DNS; clients to the
public gateway; the gateways to the control plane and the runtimes; the control plane to Redis, the runtimes'
admin port, its peers and HTTPS (API server, AWS); the runtimes to HTTPS (S3, STS, Secrets Manager) and
nothing else: no other pod, no plain HTTP out, not the node's metadata service."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import by_kind, template
from tests.chart.test_cells import _values as cell_values_file

NS = "fairshare"
REGION = "region:us-east-1"


@dataclass(frozen=True)
class Peer:
    """A pod (namespace and labels) or an address outside the cluster."""
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    ip: str | None = None

    def __hash__(self) -> int:
        return hash((self.namespace, tuple(sorted(self.labels.items())), self.ip))


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {"In": present and value in e.get("values", []), "NotIn": value not in e.get("values", []),
              "Exists": present, "DoesNotExist": not present}[e["operator"]]
        if not ok:
            return False
    return True


def _peer_matches(rule_peer: dict[str, Any], peer: Peer, policy_ns: str) -> bool:
    if "ipBlock" in rule_peer:
        if peer.ip is None:
            return False  # pod IPs are not in the blocks these policies name (the VPC is not 0.0.0.0/0's except)
        block = rule_peer["ipBlock"]
        ip = ipaddress.ip_address(peer.ip)
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if peer.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        ns_labels = {"kubernetes.io/metadata.name": peer.namespace}
        if not _matches(rule_peer["namespaceSelector"], ns_labels):
            return False
    elif peer.namespace != policy_ns:
        return False
    return "podSelector" not in rule_peer or _matches(rule_peer["podSelector"], peer.labels)


def _port_ok(rule: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("protocol", "TCP") == protocol and p.get("port") == port for p in ports)


def _direction_allows(policies: list[dict[str, Any]], pod: Peer, other: Peer, port: int, protocol: str,
                      direction: str) -> bool:
    key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [p for p in policies if p["metadata"].get("namespace", NS) == pod.namespace
                 and direction in p["spec"].get("policyTypes", ["Ingress"])
                 and _matches(p["spec"]["podSelector"], pod.labels)]
    if not selecting:
        return True
    return any(_port_ok(rule, port, protocol)
               and (not rule.get(peers) or any(_peer_matches(r, other, p["metadata"]["namespace"])
                                               for r in rule[peers]))
               for p in selecting for rule in p["spec"].get(key) or [])


def allowed(manifests: list[dict[str, Any]], src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> bool:
    policies = by_kind(manifests, "NetworkPolicy")
    out = src.namespace is None or _direction_allows(policies, src, dst, port, protocol, "Egress")
    inn = dst.namespace is None or _direction_allows(policies, dst, src, port, protocol, "Ingress")
    return out and inn


def pod(manifests: list[dict[str, Any]], name: str) -> Peer:
    (d,) = [d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"] == name]
    return Peer(NS, dict(d["spec"]["template"]["metadata"]["labels"]))


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
