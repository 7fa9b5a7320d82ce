"""Routine node maintenance must not take a fleet down: every serving Deployment (each pool's runtimes, every
gateway fleet, the control plane) has a PodDisruptionBudget of its own and spreads its replicas across nodes
and zones, so a node drain (a node-group upgrade, Cluster Autoscaler's scale-down, which also removes nodes
with emptyDir pods) evicts one replica at a time instead of a whole pool packed onto one node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.chart.helm import by_kind, template

Manifests = list[dict[str, Any]]
SPREAD_KEYS = {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


def _serving(manifests: Manifests) -> list[dict[str, Any]]:
    # Redis is one replica by design (never two primaries counting the same windows).
    return [d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"] != "fairshare-redis"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_serving_fleet_has_its_own_disruption_budget(rendered: dict[str, Manifests]) -> None:
    for case, manifests in rendered.items():
        budgets = by_kind(manifests, "PodDisruptionBudget")
        deployments = by_kind(manifests, "Deployment")
        for d in _serving(manifests):
            if d["spec"].get("replicas") == 1 and d["metadata"]["name"] == "fairshare-control-plane":
                continue  # a lone replica's minAvailable-1 budget would block every drain of its node
            labels = d["spec"]["template"]["metadata"]["labels"]
            mine = [b for b in budgets if _selects(b["spec"]["selector"]["matchLabels"], labels)]
            assert len(mine) == 1, (case, d["metadata"]["name"], [b["metadata"]["name"] for b in mine])
            (budget,) = mine
            # It protects this fleet alone: no other Deployment's pods count against it.
            selector = budget["spec"]["selector"]["matchLabels"]
            others = [o["metadata"]["name"] for o in deployments
                      if o is not d and _selects(selector, o["spec"]["template"]["metadata"]["labels"])]
            assert not others, (case, budget["metadata"]["name"], others)
            if d["metadata"]["name"].startswith("fairshare-pool-"):
                assert budget["spec"] == {**budget["spec"], "maxUnavailable": 1}, (case, budget)


def test_every_serving_fleet_spreads_across_nodes_and_zones(rendered: dict[str, Manifests]) -> None:
    for case, manifests in rendered.items():
        for d in _serving(manifests):
            pod = d["spec"]["template"]
            constraints = pod["spec"].get("topologySpreadConstraints", [])
            assert {c["topologyKey"] for c in constraints} == SPREAD_KEYS, (case, d["metadata"]["name"])
            for c in constraints:
                # Soft, so a small cluster still schedules; counting exactly this fleet's pods.
                assert c["whenUnsatisfiable"] == "ScheduleAnyway"
                assert c["labelSelector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"], (case, c)


def test_a_pools_budget_follows_the_value(helm_bin: str, spec_values: dict[str, Path]) -> None:
    manifests = template(helm_bin, spec_values["us-east-1"], sets=("inference.podDisruptionBudget.maxUnavailable=2",))
    budgets = by_kind(manifests, "PodDisruptionBudget")
    pools = [b for b in budgets if b["metadata"]["name"].startswith("fairshare-pool-")]
    assert pools and {b["spec"]["maxUnavailable"] for b in pools} == {2}
