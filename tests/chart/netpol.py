"""NetworkPolicies evaluated as Kubernetes does, on rendered manifests: a pod selected by any policy of a
direction admits only what some rule of those allows; rules add up."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tests.chart.helm import by_kind

NS = "fairshare"


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
