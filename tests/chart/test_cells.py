"""A region with cells in the chart: a front tier behind the public Service, and per cell a gateway fleet
(Deployment, ClusterIP Service the control plane finds as pool gateway.<cell>, HPA, PDB) whose bootstrap names
its cell; the cells accept the front tier only; every gateway has today's hardening; a single-cell region
renders as it did."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.chart import netpol
from tests.chart.helm import (
    CHART,
    CONFIG,
    KUBERNETES_VERSIONS,
    REPO,
    HelmError,
    admission_violations,
    by_kind,
    find,
    helm,
    template,
)
from xds_server.config import PlatformConfig, load_config
from xds_server.deploy.helm_values import chart_values, dump_values
from xds_server.endpoints.slices import directory
from xds_server.envoy.process import find_envoy
from xds_server.local.certs import LocalPki

Manifests = list[dict[str, Any]]
REGION = "us-east-1"
CELLS = ["c0", "c1", "c2", "c3"]
# The random parts of a render (a fresh signing key and Redis password each time) and what hashes them.
_RANDOM = re.compile(r"^\s*(signing-key\.pem|password|users\.acl|checksum/acl): .*$", re.M)


def _config_with_cells(root: Path, cells: dict[str, Any] | None) -> PlatformConfig:
    """The example config with `cells` set on REGION (None: the key left out)."""
    shutil.copytree(CONFIG, root)
    path = root / "regions.yaml"
    data = yaml.safe_load(path.read_text())
    for region in data["regions"]:
        if region["id"] == REGION and cells is not None:
            region["cells"] = cells
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(root)


def _values(tmp: Path, name: str, cells: dict[str, Any] | None) -> Path:
    cfg = _config_with_cells(tmp / f"config-{name}", cells)
    path = tmp / f"{name}.yaml"
    path.write_text(dump_values(chart_values(cfg, REGION, tmp / f"config-{name}", REPO / "policy")))
    return path


@pytest.fixture(scope="module")
def cell_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _values(tmp_path_factory.mktemp("cells"), "four", {"shared": 4})


@pytest.fixture(scope="module")
def four_cells(helm_bin: str, cell_values: Path) -> Manifests:
    return template(helm_bin, cell_values)


def pod_spec(manifests: Manifests, name: str) -> dict[str, Any]:
    return find(manifests, "Deployment", name)["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def test_chart_values_carry_each_cell_and_its_bootstrap(cell_values: Path) -> None:
    spec = yaml.safe_load(cell_values.read_text())["spec"]
    assert [c["name"] for c in spec["cells"]] == CELLS
    for cell in spec["cells"]:
        assert json.loads(cell["bootstrap"])["node"]["metadata"] == {"region": REGION, "cell": cell["name"]}
    # The region's own gateway bootstrap is the front tier's.
    assert json.loads(spec["gatewayBootstrap"])["node"]["metadata"] == {"region": REGION, "cell": "front"}


def test_four_cells_render_a_front_tier_and_a_gateway_fleet_per_cell(four_cells: Manifests) -> None:
    region = next(r for r in load_config(CONFIG).regions.values() if r.id == REGION)
    public = find(four_cells, "Service", "fairshare-gateway")  # the same public Service (and load balancer)
    assert public["spec"]["type"] == "LoadBalancer"
    assert public["spec"]["selector"]["app.kubernetes.io/component"] == "gateway-front"
    for kind in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        find(four_cells, kind, "fairshare-gateway-front")
    front_boot = find(four_cells, "ConfigMap", "fairshare-gateway-front-bootstrap")["data"]["bootstrap.json"]
    assert json.loads(front_boot)["node"]["metadata"] == {"region": REGION, "cell": "front"}
    assert not [m for m in four_cells if m["metadata"]["name"] == "fairshare-gateway" and m["kind"] != "Service"]

    cell_services = [s for s in by_kind(four_cells, "Service") if "fairshare.io/cell" in s["metadata"]["labels"]]
    assert sorted(s["metadata"]["labels"]["fairshare.io/cell"] for s in cell_services) == CELLS
    for cell in CELLS:
        name = f"fairshare-cell-{cell}"
        svc = find(four_cells, "Service", name)
        assert svc["spec"]["type"] == "ClusterIP"
        labels = svc["metadata"]["labels"]
        assert (labels["fairshare.io/region"], labels["fairshare.io/pool"]) == (REGION, f"gateway.{cell}")
        assert svc["spec"]["ports"] == [{"name": "http", "port": region.gateway_port, "targetPort": "http"}]
        deploy = find(four_cells, "Deployment", name)
        pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
        # The Service selects this cell's pods only.
        assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
        assert svc["spec"]["selector"]["fairshare.io/cell"] == cell
        assert deploy["spec"]["selector"]["matchLabels"]["fairshare.io/cell"] == cell
        for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
            find(four_cells, kind, name)
        (vol,) = [v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "bootstrap"]
        boot = find(four_cells, "ConfigMap", vol["configMap"]["name"])["data"]["bootstrap.json"]
        assert json.loads(boot)["node"]["metadata"] == {"region": REGION, "cell": cell}


def test_the_control_plane_finds_each_cells_gateways_as_its_pool(four_cells: Manifests) -> None:
    """The EndpointSlice each cell Service gets (labels copied from the Service, the port named as the Service's,
    the container port behind it), read by the control plane's own slice parser."""
    slices: list[dict[str, Any]] = []
    for svc in by_kind(four_cells, "Service"):
        if "fairshare.io/cell" not in svc["metadata"]["labels"]:
            continue
        deploy = find(four_cells, "Deployment", svc["metadata"]["name"])
        (container,) = deploy["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        slices.append({
            "metadata": {"name": f"{svc['metadata']['name']}-abcde", "labels": svc["metadata"]["labels"]},
            "addressType": "IPv4",
            "ports": [{"name": p["name"], "port": ports[p["targetPort"]]} for p in svc["spec"]["ports"]],
            "endpoints": [{"addresses": [f"10.0.{len(slices)}.1"], "conditions": {"ready": True}}],
        })
    found = directory(slices)
    assert sorted(found.by_pool) == [(REGION, f"gateway.{c}") for c in CELLS]


# -- network policy: who may reach whom ----------------------------------------------------------------------

def _reaches(manifests: Manifests, source: dict[str, str], dest: dict[str, str], port: int) -> bool:
    """Whether a pod labelled `source` may open `port` on a pod labelled `dest`, both in the platform's
    namespace, under the rendered NetworkPolicies (both directions)."""
    return netpol.allowed(manifests, netpol.Peer(netpol.NS, source), netpol.Peer(netpol.NS, dest), port)


def _pod_labels(manifests: Manifests, deployment: str) -> dict[str, str]:
    return find(manifests, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def test_network_policies_let_only_the_front_tier_reach_the_cells(four_cells: Manifests) -> None:
    port = load_config(CONFIG).regions[REGION].gateway_port
    front = _pod_labels(four_cells, "fairshare-gateway-front")
    cells = {c: _pod_labels(four_cells, f"fairshare-cell-{c}") for c in CELLS}
    runtime = _pod_labels(four_cells, "fairshare-pool-cpu-general")
    control = _pod_labels(four_cells, "fairshare-control-plane")
    stranger = {"app": "something-else"}
    inference_port = 8080
    for cell, labels in cells.items():
        assert _reaches(four_cells, front, labels, port), cell
        assert not _reaches(four_cells, stranger, labels, port), cell
        assert not _reaches(four_cells, control, labels, port), cell
        for other, other_labels in cells.items():
            if other != cell:
                assert not _reaches(four_cells, other_labels, labels, port), f"{other} -> {cell}"
        # Each cell routes to the runtimes and takes its config from the control plane.
        assert _reaches(four_cells, labels, runtime, inference_port), cell
        assert _reaches(four_cells, labels, control, 18000), cell
    # The front tier takes its config over xDS, and reaches no runtime: it routes to cells only.
    assert _reaches(four_cells, front, control, 18000)
    assert not _reaches(four_cells, front, runtime, inference_port)


def test_single_cell_network_policies_are_todays(rendered: dict[str, Manifests]) -> None:
    manifests = rendered[f"region:{REGION}"]
    gateway, runtime = _pod_labels(manifests, "fairshare-gateway"), _pod_labels(manifests, "fairshare-pool-cpu-general")
    assert _reaches(manifests, gateway, runtime, 8080)
    assert not [p for p in by_kind(manifests, "NetworkPolicy") if p["metadata"]["name"] == "fairshare-cells-from-front"]


# -- the same Envoy everywhere --------------------------------------------------------------------------------

def _hardening(spec: dict[str, Any]) -> dict[str, Any]:
    """The pod spec without what legitimately differs between gateway fleets (its bootstrap ConfigMap, its
    preStop wait and grace period, its size, the pods its spread counts: its own fleet's)."""
    spec = copy.deepcopy(spec)
    spec.pop("terminationGracePeriodSeconds")
    for c in spec["topologySpreadConstraints"]:
        c.pop("labelSelector")
    (envoy,) = spec["containers"]
    envoy["lifecycle"]["preStop"]["exec"]["command"][-1] = re.sub(
        r"sleep \d+$", "sleep N", envoy["lifecycle"]["preStop"]["exec"]["command"][-1])
    envoy.pop("resources")
    args = envoy["args"]
    args[args.index("--concurrency") + 1] = "N"
    for v in spec["volumes"]:
        if v["name"] == "bootstrap":
            v["configMap"]["name"] = "BOOTSTRAP"
    return spec


def test_front_and_cells_run_todays_gateway_hardening(four_cells: Manifests,
                                                       rendered: dict[str, Manifests]) -> None:
    today = _hardening(pod_spec(rendered[f"region:{REGION}"], "fairshare-gateway"))
    assert today["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True  # what is compared
    for name in ["fairshare-gateway-front", *(f"fairshare-cell-{c}" for c in CELLS)]:
        spec = pod_spec(four_cells, name)
        assert _hardening(spec) == today, name
        script = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1]
        wait = int(script.rsplit("sleep ", 1)[1])
        assert wait >= 30 and spec["terminationGracePeriodSeconds"] > wait, name  # grace outlasts the drain
        assert find(four_cells, "PodDisruptionBudget", name)["spec"]["minAvailable"] == 1


def test_cell_bootstraps_are_accepted_by_envoy(four_cells: Manifests, tmp_path: Path) -> None:
    pki = LocalPki.ensure(tmp_path / "pki")
    for name in ("fairshare-gateway-front-bootstrap", "fairshare-cell-c0-bootstrap"):
        text = find(four_cells, "ConfigMap", name)["data"]["bootstrap.json"]
        dirs = {str(Path(p).parent) for p in re.findall(r'"path":\s*"(/[^"]+\.json)"', text)}
        for d in dirs:  # the pod's SDS dir, here a local CA's (as in test_render)
            text = text.replace(d, str(pki.sds_dir))
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        proc = subprocess.run([find_envoy(), "--mode", "validate", "-c", str(path), "--service-node", "gw-0"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]


def test_each_cells_workers_and_resources_come_from_values(helm_bin: str, cell_values: Path, tmp_path: Path) -> None:
    sizes = tmp_path / "sizes.yaml"
    sizes.write_text(yaml.safe_dump({"gateway": {"workers": 3, "cells": {
        "workers": 2,
        "overrides": {"c3": {"workers": 4, "replicas": 5, "resources": {"limits": {"cpu": "4"}},
                             "autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 1,
                                             "targetCPUUtilizationPercentage": 70}}}}}}))
    manifests = template(helm_bin, cell_values, sizes)

    def envoy(name: str) -> dict[str, Any]:
        (c,) = pod_spec(manifests, name)["containers"]
        return c  # type: ignore[no-any-return]

    def workers(name: str) -> str:
        args = envoy(name)["args"]
        return str(args[args.index("--concurrency") + 1])

    assert workers("fairshare-gateway-front") == "3"  # the front tier: gateway.workers
    assert workers("fairshare-cell-c0") == "2"
    assert workers("fairshare-cell-c3") == "4"
    # A partial override merges: the limit's cpu changes, its memory and the requests stay the defaults.
    assert envoy("fairshare-cell-c3")["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"},
                                                         "limits": {"cpu": "4", "memory": "2Gi"}}
    assert find(manifests, "Deployment", "fairshare-cell-c3")["spec"]["replicas"] == 5
    assert "replicas" not in find(manifests, "Deployment", "fairshare-cell-c0")["spec"]  # the HPA sizes it
    hpas = {m["metadata"]["name"] for m in by_kind(manifests, "HorizontalPodAutoscaler")}
    assert "fairshare-cell-c3" not in hpas and "fairshare-cell-c0" in hpas


def test_an_override_for_a_cell_the_region_lacks_is_refused(helm_bin: str, cell_values: Path) -> None:
    with pytest.raises(HelmError) as err:
        template(helm_bin, cell_values, sets=("gateway.cells.overrides.c9.workers=4",))
    assert "gateway.cells.overrides.c9: region us-east-1 has no cell c9 (its cells: c0, c1, c2, c3)" in str(err.value)


def test_an_override_in_a_region_without_cells_is_refused(helm_bin: str, spec_values: dict[str, Path]) -> None:
    # Nothing there reads the overrides, so the mistake would otherwise go unnoticed.
    with pytest.raises(HelmError) as err:
        template(helm_bin, spec_values["eu-west-1"], sets=("gateway.cells.overrides.c9.workers=4",))
    assert "gateway.cells.overrides.c9: region eu-west-1 has no cell c9 (it has no cells" in str(err.value)
    # The cells' defaults are no mistake there: every region's values carry them.
    template(helm_bin, spec_values["eu-west-1"], sets=("gateway.cells.workers=4",))


BAD = [
    (["gateway.cells.workers=0"], "at '/gateway/cells/workers': minimum: got 0, want 1"),
    (["gateway.cells.overrides.c0.workers=0"], "at '/gateway/cells/overrides/c0/workers': minimum: got 0, want 1"),
    (["gateway.cells.overrides.c0.resources.limits.cpu=lots"], "at '/gateway/cells/overrides/c0/resources/limits/cpu'"),
    (["gateway.cells.overrides.c0.wrkers=2"], "additional properties 'wrkers' not allowed"),
    (["spec.cells[0].name=Cell_0", "spec.cells[0].bootstrap={}"], "at '/spec/cells/0/name'"),
    (["spec.cells[0].name=c0"], "at '/spec/cells/0': missing property 'bootstrap'"),
]


@pytest.mark.parametrize(("sets", "expected"), BAD, ids=[s[0][-1] for s in BAD])
def test_bad_cell_values_are_rejected_with_the_field_named(helm_bin: str, sets: list[str], expected: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    with pytest.raises(HelmError) as lint:
        helm("lint", "--strict", str(CHART), *args, helm_bin=helm_bin)
    assert expected in str(lint.value)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_four_cells_are_valid_kubernetes_and_admitted(four_cells: Manifests, version: str) -> None:
    problems = []
    for m in four_cells:
        if m["apiVersion"].startswith("cert-manager.io/"):
            continue
        try:
            kubernetes_validate.validate(m, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{m['kind']}/{m['metadata']['name']}: {err.message}")
    assert not problems, "\n".join(problems)
    assert admission_violations(four_cells) == []


def test_lint_passes_with_cells(helm_bin: str, cell_values: Path) -> None:
    out = helm("lint", "--strict", str(CHART), "-f", str(cell_values), helm_bin=helm_bin)
    assert "0 chart(s) failed" in out


def test_one_cell_renders_exactly_what_no_cells_key_renders(helm_bin: str, tmp_path: Path) -> None:
    """`cells: {shared: 1}` is today's layout: the same manifests, byte for byte (bar the random secrets), as a
    region that never mentions cells; no front tier, no cell objects, no `cell` in the bootstrap."""
    plain = _values(tmp_path, "plain", None)
    one = _values(tmp_path, "one", {"shared": 1})
    assert "cells" not in yaml.safe_load(one.read_text())["spec"]
    args = ["template", "fairshare", str(CHART), "--namespace", "fairshare", "--kube-version", KUBERNETES_VERSIONS[-1]]
    texts = [helm(*args, "-f", str(v), helm_bin=helm_bin) for v in (plain, one)]
    # The config ConfigMap differs by the `cells:` line in its copy of regions.yaml; nothing else may.
    docs = [[_RANDOM.sub("", d) for d in t.split("\n---\n") if "name: fairshare-config\n" not in d] for t in texts]
    assert docs[0] == docs[1]
    manifests = [d for d in yaml.safe_load_all(texts[1]) if d]
    boot = json.loads(find(manifests, "ConfigMap", "fairshare-gateway-bootstrap")["data"]["bootstrap.json"])
    assert boot["node"]["metadata"] == {"region": REGION}
    assert not [m for m in manifests if "cell" in m["metadata"]["name"] or "front" in m["metadata"]["name"]]
