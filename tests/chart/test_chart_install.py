"""`make chart-install` as an operator runs it on the cluster the docs build, with helm's installs and kubectl
stood in for (every other step real: chart-values, the chart_inputs conversion, helm template): it refuses
before installing anything when the release needs cert-manager and the cluster lacks its CRDs, and it carries
Terraform's `chart_inputs` (the IRSA role ARNs, the tenants' key prefix, the audit bucket) into the release, so
the runtimes can read S3 artifacts and pseudonymisation keys and the control planes ship their audit trail. The
chart itself refuses a spec that needs those and lacks them."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import APPLIED_REGION, AppliedRegion
from tests.chart.helm import CONFIG, REPO, HelmError, find, template
from xds_server.config import load_config
from xds_server.deploy.chart_inputs import ChartInputsError, chart_inputs_values, main
from xds_server.deploy.helm_values import chart_values, dump_values

ROLE = "eks.amazonaws.com/role-arn"
INPUTS = {
    "region": APPLIED_REGION,
    "runtime_role_arn": "arn:aws:iam::123456789012:role/fairshare-eu-west-1-model-reader",
    "control_plane_role_arn": "arn:aws:iam::123456789012:role/fairshare-eu-west-1-control-plane",
    "tenant_secret_name_prefix": "fairshare/tenants",
    "audit_bucket": "fairshare-eu-west-1-audit-123456789012",
    "audit_prefix": "audit/",
}


@dataclass
class Install:
    rc: int
    stderr: str
    calls: list[str]  # each helm or kubectl call, in order
    out: Path  # CHART_OUT


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def make_install(tmp_path: Path, helm_bin: str, addons_values: Path, inputs: dict[str, Any], *,
                 crds: bool, chart_values_file: Path | None = None) -> Install:
    """make chart-install with helm's upgrades and every kubectl call logged instead of run; `crds`: whether
    the cluster has cert-manager's CRDs."""
    if shutil.which("make") is None:
        pytest.skip("make is not on PATH")
    log = tmp_path / "calls.log"
    fake_helm = _script(tmp_path / "helm", f'echo "helm $*" >> {log}\n'
                        f'[ "$1" = upgrade ] && exit 0\nexec {helm_bin} "$@"\n')
    fake_kubectl = _script(tmp_path / "kubectl", f'echo "kubectl $*" >> {log}\n' + (
        "" if crds else 'if [ "$1 $2" = "get crd" ]; then echo \'Error from server (NotFound): '
        'customresourcedefinitions.apiextensions.k8s.io "certificates.cert-manager.io" not found\' >&2; exit 1; fi\n')
        + "exit 0\n")
    inputs_file = tmp_path / "chart-inputs.json"
    inputs_file.write_text(json.dumps(inputs))
    out = tmp_path / "chart"
    args = ["make", "--no-print-directory", "-o", "setup", "-o", "tools", "chart-install", f"REGION={APPLIED_REGION}",
            f"HELM={fake_helm}", f"KUBECTL={fake_kubectl}", f"ADDONS_TF_VALUES={addons_values}",
            f"CHART_TF_INPUTS={inputs_file}", f"CHART_OUT={out}"]
    if chart_values_file is not None:
        args.append(f"CHART_VALUES={chart_values_file}")
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MAKEFLAGS": ""})
    calls = log.read_text().splitlines() if log.exists() else []
    return Install(proc.returncode, proc.stderr, calls, out)


@pytest.fixture
def addons_values(tmp_path: Path) -> Path:
    # Never read here: helm's upgrades are logged only.
    path = tmp_path / "addons.json"
    path.write_text("{}")
    return path


def test_without_cert_managers_crds_nothing_is_installed(helm_bin: str, addons_values: Path, tmp_path: Path) -> None:
    done = make_install(tmp_path, helm_bin, addons_values, INPUTS, crds=False)
    assert done.rc == 2, done.stderr
    assert "needs cert-manager" in done.stderr and "certificates.cert-manager.io" in done.stderr
    assert "Install cert-manager v1" in done.stderr and "docs/helm.md" in done.stderr
    assert not [c for c in done.calls if c.startswith("helm upgrade") or c.startswith("kubectl apply")], done.calls


def test_the_documented_version_is_the_one_make_checks_for() -> None:
    version = next(line.split(":=")[1].strip() for line in (REPO / "mk" / "addons.mk").read_text().splitlines()
                   if line.startswith("CERT_MANAGER_VERSION"))
    for doc in ("docs/helm.md", "docs/region-rollout.md"):
        text = (REPO / doc).read_text()
        assert f"--version {version}" in text, doc


def test_own_secrets_need_no_cert_manager(helm_bin: str, addons_values: Path, tmp_path: Path) -> None:
    own = tmp_path / "own-secrets.yaml"
    own.write_text(yaml.safe_dump({"tls": {"upstream": {"certManager": {"enabled": False}, "existingSecrets": {
        "gateway": "gw-tls", "runtime": "rt-tls", "controlPlane": "cp-tls"}}}}))
    done = make_install(tmp_path, helm_bin, addons_values, INPUTS, crds=False, chart_values_file=own)
    assert done.rc == 0, done.stderr
    assert not [c for c in done.calls if c.startswith("kubectl get crd")]


def test_the_release_runs_with_the_identities_terraform_output(helm_bin: str, applied: AppliedRegion,
                                                                 tmp_path: Path) -> None:
    """docs/region-rollout.md's rollout, as written: region-apply, then make chart-install. The runtimes'
    and the control plane's accounts carry the roles of the region's chart_inputs, and every runtime reads
    the tenants' keys under its prefix, with no --set by hand."""
    inputs = applied.outputs["chart_inputs"]
    done = make_install(tmp_path, helm_bin, applied.values_file, inputs, crds=True)
    assert done.rc == 0, done.stderr
    installs = [c for c in done.calls if c.startswith("helm upgrade --install ")]
    assert [c.split()[3] for c in installs] == ["cluster-addons", "fairshare"]
    assert done.calls.index(next(c for c in done.calls if c.startswith("kubectl get crd"))) < \
        done.calls.index(next(c for c in done.calls if c.startswith("kubectl apply")))
    words = installs[1].split()
    values = [Path(words[i + 1]) for i, w in enumerate(words) if w == "-f"]
    assert done.out / "terraform.yaml" in values
    manifests = template(helm_bin, *values)
    assert find(manifests, "ServiceAccount", "fairshare-runtime")["metadata"]["annotations"][ROLE] == \
        inputs["runtime_role_arn"]
    assert find(manifests, "ServiceAccount", "fairshare-control-plane")["metadata"]["annotations"][ROLE] == \
        inputs["control_plane_role_arn"]
    # The audit trail goes to the bucket Terraform made, under the prefix the role may write, per pod.
    control_plane = find(manifests, "Deployment", "fairshare-control-plane")["spec"]["template"]["spec"]
    args = control_plane["containers"][0]["args"]
    assert args[args.index("--audit-ship") + 1] == \
        f"s3://{inputs['audit_bucket']}/{inputs['audit_prefix']}{APPLIED_REGION}/$(POD_NAME)"
    pools = [d for d in manifests if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("fairshare-pool-")]
    assert pools
    for d in pools:
        args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        keys = args[args.index("--pseudonymisation-keys") + 1]
        assert keys == f"secretsmanager:{inputs['tenant_secret_name_prefix']}"


def test_another_regions_or_an_incomplete_output_is_refused_naming_the_field(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ChartInputsError, match="region is 'us-east-1', not 'eu-west-1'"):
        chart_inputs_values({**INPUTS, "region": "us-east-1"}, APPLIED_REGION)
    with pytest.raises(ChartInputsError, match=r"runtime_role_arn is missing or empty \(the chart's inference"):
        chart_inputs_values({**INPUTS, "runtime_role_arn": ""}, APPLIED_REGION)
    broken = tmp_path / "chart-inputs.json"
    broken.write_text("{not json")
    assert main([str(broken), "--region", APPLIED_REGION, "-o", str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {broken}: cannot read terraform's chart_inputs") and "Traceback" not in err


def _pseudonymising_spec(tmp_path: Path) -> Path:
    """The example config with initech (eu-west-1) pseudonymising email addresses instead of redacting them."""
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    tenant = config / "tenants" / "initech.yaml"
    doc = yaml.safe_load(tenant.read_text())
    doc["pii"]["redact"].remove("email")
    doc["pii"]["pseudonymise"] = ["email"]
    tenant.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = tmp_path / "spec.yaml"
    spec.write_text(dump_values(chart_values(load_config(config), APPLIED_REGION, config, REPO / "policy")))
    return spec


def test_a_spec_that_needs_the_runtimes_role_is_refused_without_it(helm_bin: str, tmp_path: Path) -> None:
    spec = _pseudonymising_spec(tmp_path)
    with pytest.raises(HelmError) as err:
        template(helm_bin, spec)
    message = str(err.value)
    assert "inference.roleArn is empty" in message and "pseudonymisation keys of tenants initech" in message
    assert "inference.pseudonymisationKeys.secretPrefix is empty" in message and "chart_inputs" in message
    terraform = tmp_path / "terraform.yaml"
    terraform.write_text(dump_values(chart_inputs_values(INPUTS, APPLIED_REGION)))
    assert find(template(helm_bin, spec, terraform), "ServiceAccount", "fairshare-runtime")


def test_an_s3_config_source_needs_the_control_planes_role(helm_bin: str, spec_values: dict[str, Path],
                                                           tmp_path: Path) -> None:
    source = tmp_path / "source.yaml"
    # What `chart-values --config-source` leaves out: the files (and this spec's local model files).
    source.write_text(yaml.safe_dump({"config": {"source": "s3://fairshare-config-eu/fairshare/config.tar.gz"},
                                      "spec": {"configFiles": [], "policyFiles": [], "modelFiles": []}}))
    spec = spec_values[APPLIED_REGION]
    with pytest.raises(HelmError, match=r"controlPlane\.roleArn is empty, but the control plane reads its config"):
        template(helm_bin, spec, source)
    assert template(helm_bin, spec, source, sets=(f"controlPlane.roleArn={INPUTS['control_plane_role_arn']}",
                                                  f"controlPlane.audit.bucket={INPUTS['audit_bucket']}"))
