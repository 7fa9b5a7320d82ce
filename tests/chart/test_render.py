"""The chart lints and renders for its defaults, its examples and each region of the tenant spec, and every
object is valid for the Kubernetes version the clusters run."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.chart.helm import CHART, EXAMPLES, KUBERNETES_VERSIONS, find, helm
from xds_server.envoy.process import find_envoy
from xds_server.local.certs import LocalPki


def test_lint_defaults_examples_and_regions(helm_bin: str, spec_values: dict[str, Path]) -> None:
    runs: list[list[str]] = [[]] + [["-f", str(e)] for e in EXAMPLES]
    runs += [["-f", str(v)] for v in spec_values.values()]
    runs += [["-f", str(v), "-f", str(e)] for v in spec_values.values() for e in EXAMPLES]
    for extra in runs:
        out = helm("lint", "--strict", str(CHART), *extra, helm_bin=helm_bin)
        assert "0 chart(s) failed" in out, (extra, out)


def test_examples_exist() -> None:
    assert EXAMPLES, "helm/fairshare/examples/ holds the example values files"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(rendered: dict[str, list[dict[str, Any]]], version: str) -> None:
    problems = []
    for case, manifests in rendered.items():
        for m in manifests:
            if m["apiVersion"].startswith("cert-manager.io/"):
                continue  # a CRD kubernetes_validate has no schema for (tests/chart/test_hardening.py checks them)
            try:
                kubernetes_validate.validate(m, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                problems.append(f"{case}: {m['kind']}/{m['metadata']['name']}: {err.message}")
    assert not problems, "\n".join(problems)


def test_regions_render_the_whole_platform(rendered: dict[str, list[dict[str, Any]]]) -> None:
    manifests = rendered["region:us-east-1"]
    for kind, name in [("Deployment", "fairshare-control-plane"), ("Deployment", "fairshare-gateway"),
                       ("Service", "fairshare-gateway"), ("HorizontalPodAutoscaler", "fairshare-gateway"),
                       ("PodDisruptionBudget", "fairshare-gateway"), ("Deployment", "fairshare-redis"),
                       ("ConfigMap", "fairshare-config"), ("ConfigMap", "fairshare-policy"),
                       ("ConfigMap", "fairshare-gateway-bootstrap")]:
        find(manifests, kind, name)
    assert not [m for m in manifests if m["metadata"]["name"] == "fairshare-opa"]  # opa.enabled is off
    # With opa.enabled (production), OPA is a sidecar of each control plane, not a Deployment of its own.
    prod = rendered["region:us-east-1+production"]
    containers = find(prod, "Deployment", "fairshare-control-plane")["spec"]["template"]["spec"]["containers"]
    assert "opa" in {c["name"] for c in containers}


def test_every_namespaced_object_names_its_namespace(rendered: dict[str, list[dict[str, Any]]]) -> None:
    # The admission policy and `kubectl apply` of rendered files both read metadata.namespace.
    for manifests in rendered.values():
        for m in manifests:
            if m["kind"] != "Namespace":
                assert m["metadata"].get("namespace"), f"{m['kind']}/{m['metadata']['name']}"


def bootstrap_sds_dir(text: str) -> str:
    """The directory the bootstrap's file-SDS paths name (one: the gateway's upstream-TLS dir)."""
    dirs = {str(Path(p).parent) for p in re.findall(r'"path":\s*"(/[^"]+\.json)"', text)}
    assert len(dirs) == 1, dirs
    return dirs.pop()


def test_gateway_bootstrap_is_accepted_by_envoy(rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    for region in ("us-east-1", "eu-west-1"):
        cm = find(rendered[f"region:{region}"], "ConfigMap", "fairshare-gateway-bootstrap")
        bootstrap = json.loads(cm["data"]["bootstrap.json"])
        assert bootstrap["node"]["metadata"]["region"] == region
        # The gateway pod mounts its SDS files at the chart's upstream-TLS dir; `--mode validate` needs them
        # to exist, so the same files come from a local CA here (xds_server.local.certs writes that layout).
        sds_dir = bootstrap_sds_dir(cm["data"]["bootstrap.json"])
        pki = LocalPki.ensure(tmp_path / "pki")
        path = tmp_path / f"{region}.json"
        path.write_text(cm["data"]["bootstrap.json"].replace(sds_dir, str(pki.sds_dir)))
        proc = subprocess.run([find_envoy(), "--mode", "validate", "-c", str(path), "--service-node", "gateway-0"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]


def test_commands_parse_with_the_real_command_lines(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The arguments the chart gives our containers are ones their programs accept (flags and model loaders)."""
    from inference_images.runtime.__main__ import build_parser as runtime_parser
    from xds_server.cli import _parser as cli_parser

    for case in ("region:us-east-1", "region:eu-west-1+small"):
        manifests = rendered[case]
        (cp,) = find(manifests, "Deployment", "fairshare-control-plane")["spec"]["template"]["spec"]["containers"]
        args = [a.replace("$(POD_IP)", "10.0.0.7") for a in cp["args"]]
        parsed = cli_parser().parse_args(args)
        assert (parsed.host, parsed.ratelimit_port, parsed.policy) == ("10.0.0.7", 18002, "/etc/fairshare/policy")
        runtimes = [d for d in manifests if d["kind"] == "Deployment"
                    and d["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"]
        assert runtimes
        for d in runtimes:
            (rt,) = d["spec"]["template"]["spec"]["containers"]
            settings = runtime_parser().parse_args(rt["args"])
            assert settings.pool == d["metadata"]["labels"]["fairshare.io/pool"]
            assert settings.admin_port and settings.cache_budget_mb


def test_envoy_runs_as_many_workers_as_its_pod_has_cpus(rendered: dict[str, list[dict[str, Any]]]) -> None:
    # Without --concurrency Envoy starts a worker per core of the node, and each one rebuilds every cluster
    # update (bench/eds_fanout.py); the chart pins it to gateway.workers, which matches limits.cpu.
    gateway = find(rendered["region:us-east-1"], "Deployment", "fairshare-gateway")
    envoy = next(c for c in gateway["spec"]["template"]["spec"]["containers"] if c["name"] == "envoy")
    args = envoy["args"]
    assert args[args.index("--concurrency") + 1] == "2"
    assert envoy["resources"]["limits"]["cpu"] == "2"
