"""The platform's own pods (control plane, every gateway fleet, Redis) run on the Terraform `system` pool by
default, not on the serving pools' nodes, and take the operator's nodeSelector, tolerations and affinity."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import REPO, HelmError, by_kind, find, template

PLATFORM = ("fairshare-control-plane", "fairshare-gateway", "fairshare-redis")
SYSTEM = {"fairshare.io/pool-kind": "system"}


def _pod(manifests: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return find(manifests, "Deployment", name)["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def test_the_default_is_the_label_terraform_gives_the_system_pool() -> None:
    # modules/node_pools labels every node of a pool with its kind; each region's variables have a system pool.
    main = (REPO / "terraform" / "modules" / "node_pools" / "main.tf").read_text()
    assert re.search(r'"fairshare\.io/pool-kind"\s*=\s*p\.kind', main)
    for tfvars in (REPO / "terraform" / "regions").glob("*.tfvars"):
        assert re.search(r'kind\s*=\s*"system"', tfvars.read_text()), tfvars.name


def test_platform_pods_run_on_the_system_pool(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for case, manifests in rendered.items():
        for d in by_kind(manifests, "Deployment"):
            name = d["metadata"]["name"]
            selector = d["spec"]["template"]["spec"].get("nodeSelector")
            if name in PLATFORM or name.startswith(("fairshare-gateway-", "fairshare-cell-")):
                assert selector == SYSTEM, (case, name)
            else:
                assert name.startswith("fairshare-pool-") and selector != SYSTEM, (case, name)


def test_the_operators_placement_is_taken(helm_bin: str, spec_values: dict[str, Path]) -> None:
    sets = tuple(s for c in ("controlPlane", "gateway", "redis") for s in (
        f"{c}.nodeSelector.fairshare\\.io/pool-kind=null", f"{c}.nodeSelector.role=platform",
        f"{c}.tolerations[0].key=dedicated", f"{c}.tolerations[0].operator=Exists",
        f"{c}.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1",
        f"{c}.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference"
        ".matchExpressions[0].key=zone-class",
        f"{c}.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference"
        ".matchExpressions[0].operator=Exists"))
    manifests = template(helm_bin, spec_values["us-east-1"], sets=sets)
    for name in PLATFORM:
        pod = _pod(manifests, name)
        assert pod["nodeSelector"] == {"role": "platform"}, name
        assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}], name
        assert pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 1


def test_a_bad_placement_is_refused_naming_the_field(helm_bin: str) -> None:
    with pytest.raises(HelmError, match="at '/gateway/tolerations'"):
        template(helm_bin, sets=("gateway.tolerations=oops",))


def test_gpu_pods_tolerate_and_select_what_terraform_and_admission_fix(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    """One setting end to end: the node groups' taint and pool label (terraform/modules/node_pools), the
    admission policy's constants, and the rendered GPU pods agree; the chart has no value to change them."""
    tf = (REPO / "terraform" / "modules" / "node_pools")
    key = re.search(r'variable "gpu_taint_key" \{[^}]*default\s*=\s*"([^"]+)"', (tf / "variables.tf").read_text())
    assert key
    value, effect = re.search(r'\(var\.gpu_taint_key\) = "(\w+):(\w+)"', (tf / "main.tf").read_text()).groups()  # type: ignore[union-attr]
    assert re.search(r'"fairshare\.io/pool"\s*=\s*name', (tf / "main.tf").read_text())
    rego = (REPO / "policy" / "admission" / "admission.rego").read_text()
    taint = {"key": key.group(1), "value": value, "effect": effect}
    assert f'gpu_taint := {{"key": "{taint["key"]}", "value": "{value}", "effect": "{effect}"}}' in rego
    assert 'pool_label := "fairshare.io/pool"' in rego
    gpu_pods = [d["spec"]["template"]["spec"] for m in rendered.values() for d in by_kind(m, "Deployment")
                if any("nvidia.com/gpu" in c["resources"].get("limits", {})
                       for c in d["spec"]["template"]["spec"]["containers"])]
    assert gpu_pods
    for pod in gpu_pods:
        assert {**taint, "operator": "Equal"} in pod["tolerations"]
        assert "fairshare.io/pool" in pod["nodeSelector"]
