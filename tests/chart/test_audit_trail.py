"""The audit trail outlives the pod: with the region's audit bucket (chart_inputs' audit_bucket) the control
plane ships every closed audit file under a prefix of its pod's own, stops within a grace period long enough
for the last ship, and may reach S3; an AWS install without the bucket is refused, any other install is told in
NOTES that each restart loses the trail."""

from __future__ import annotations

import inspect
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.chart.helm import (
    CHART,
    EXAMPLES,
    KUBERNETES_VERSIONS,
    HelmError,
    admission_violations,
    by_kind,
    find,
    template,
)
from xds_server.audit import cli as audit_cli
from xds_server.audit.ship import S3Shipper
from xds_server.cli import _parser
from xds_server.controlplane.main import _ship_the_last_records
from xds_server.deploy.chart_inputs import ChartInputsError, chart_inputs_values

REGION = "eu-west-1"
BUCKET = "fairshare-eu-west-1-audit-123456789012"
ROLE = "arn:aws:iam::123456789012:role/fairshare-eu-west-1-control-plane"
# As Terraform's chart_inputs give them: the prefix ends in /.
SHIPPING = (f"controlPlane.audit.bucket={BUCKET}", "controlPlane.audit.prefix=audit/")
PRODUCTION = next(e for e in EXAMPLES if e.stem == "production")


def _control_plane(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return find(manifests, "Deployment", "fairshare-control-plane")["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _args(pod: dict[str, Any]) -> list[str]:
    return list(pod["containers"][0]["args"])


def _notes(helm_bin: str, *values: Path, sets: tuple[str, ...] = ()) -> str:
    """NOTES.txt as `helm install` prints it (helm template leaves it out)."""
    args = [helm_bin, "install", "fairshare", str(CHART), "--namespace", "fairshare", "--dry-run=client"]
    args += [a for v in values for a in ("-f", str(v))] + [a for s in sets for a in ("--set", s)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise HelmError(proc.stderr + proc.stdout)
    return proc.stdout[proc.stdout.index("NOTES:"):]


def test_each_pod_ships_under_a_prefix_of_its_own(helm_bin: str, spec_values: dict[str, Path]) -> None:
    pod = _control_plane(template(helm_bin, spec_values[REGION], PRODUCTION, sets=SHIPPING))
    args = _args(pod)
    assert args[args.index("--audit-ship") + 1] == f"s3://{BUCKET}/audit/{REGION}/$(POD_NAME)"
    assert args[args.index("--audit-max-mb") + 1] == "16" and args[args.index("--audit-lock-days") + 1] == "400"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    # The pod's own name: a new pod (restart elsewhere, rollout, second replica) gets a new prefix; a container
    # restarted in the same pod keeps its name and its emptyDir, where the file numbering goes on.
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["AWS_REGION"]["value"] == REGION
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    assert state == {"name": "state", "emptyDir": {}}  # why the trail must be shipped


def test_the_rendered_flags_are_the_ones_serve_ships_with(helm_bin: str, spec_values: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """What the kubelet runs: $(POD_NAME) expanded, the arguments parsed by `fairshare serve` itself."""
    args = _args(_control_plane(template(helm_bin, spec_values[REGION], sets=SHIPPING)))
    pod_name = "fairshare-control-plane-7d9f8c6b5-x2x4q"
    assert args[0] == "serve"  # the container runs `fairshare` with these
    parsed = _parser().parse_args([a.replace("$(POD_NAME)", pod_name) for a in args])
    parsed.state = str(tmp_path)  # the pod's /var/lib/fairshare
    audit_log = audit_cli.open_from_args(parsed)
    assert audit_log is not None and isinstance(audit_log.shipper, S3Shipper)
    assert (audit_log.shipper.bucket, audit_log.shipper.prefix) == (BUCKET, f"audit/{REGION}/{pod_name}/")
    assert audit_log.max_bytes == 16 * 2**20 and audit_log.shipper.retention_days == 400
    # A quiet control plane's records are shipped within the hour, not only at 16 MiB or a stop.
    assert parsed.audit_seal_after == 3600


def test_a_stopping_pod_has_the_time_to_ship_its_last_file(helm_bin: str, spec_values: dict[str, Path]) -> None:
    ship_wait = inspect.signature(_ship_the_last_records).parameters["timeout_s"].default
    pod = _control_plane(template(helm_bin, spec_values[REGION], sets=SHIPPING))
    # Kubernetes' default (30 s) leaves the ship 20 s after the servers' stop, with nothing for a slow S3.
    assert pod["terminationGracePeriodSeconds"] >= 2 * ship_wait + 10


def test_the_control_plane_may_reach_s3(helm_bin: str, spec_values: dict[str, Path]) -> None:
    manifests = template(helm_bin, spec_values[REGION], PRODUCTION, sets=SHIPPING)
    egress = find(manifests, "NetworkPolicy", "fairshare-control-plane-egress")["spec"]["egress"]
    https = [r for r in egress if {"protocol": "TCP", "port": 443} in r.get("ports", [])]
    assert https and all("ipBlock" in to for r in https for to in r["to"])


def test_shipping_passes_admission_and_kubernetes_validation(helm_bin: str, spec_values: dict[str, Path]) -> None:
    manifests = template(helm_bin, spec_values[REGION], PRODUCTION, sets=(*SHIPPING, f"controlPlane.roleArn={ROLE}"))
    assert admission_violations(manifests) == []
    for version in KUBERNETES_VERSIONS:
        for m in by_kind(manifests, "Deployment"):
            kubernetes_validate.validate(m, version, strict=True)


def test_an_aws_install_without_the_audit_bucket_is_refused(helm_bin: str, spec_values: dict[str, Path]) -> None:
    """An IRSA role means a region Terraform built, which has the bucket: a values file without it (or a region
    whose Terraform predates it) would lose the trail at every restart."""
    with pytest.raises(HelmError) as refused:
        template(helm_bin, spec_values[REGION], PRODUCTION, sets=(f"controlPlane.roleArn={ROLE}",))
    message = str(refused.value)
    assert "controlPlane.audit.bucket is empty" in message and "every restart would lose the audit trail" in message
    assert "chart_inputs' audit_bucket" in message
    assert _control_plane(template(helm_bin, spec_values[REGION], PRODUCTION,
                                   sets=(f"controlPlane.roleArn={ROLE}", *SHIPPING)))


def test_without_a_bucket_nothing_is_shipped_and_notes_say_the_trail_is_lost(
        helm_bin: str, spec_values: dict[str, Path]) -> None:
    # The production example alone (no Terraform values): it renders, as make chart-lint requires.
    args = _args(_control_plane(template(helm_bin, spec_values[REGION], PRODUCTION)))
    assert "--audit-ship" not in args and "--audit-max-mb" in args
    notes = _notes(helm_bin, spec_values[REGION], PRODUCTION)
    assert "WARNING: the audit trail is not shipped" in notes and "every restart" in notes
    assert "audit_bucket" in notes
    shipped = _notes(helm_bin, spec_values[REGION], PRODUCTION, sets=SHIPPING)
    assert "WARNING" not in shipped and f"s3://{BUCKET}/audit/{REGION}/<pod>/" in shipped


def test_a_bucket_without_the_specs_region_is_refused(helm_bin: str) -> None:
    with pytest.raises(HelmError, match=r"controlPlane\.audit\.bucket is set but spec\.region is empty"):
        template(helm_bin, sets=SHIPPING)


@pytest.mark.parametrize(("value", "expected"), [
    ("controlPlane.audit.bucket=Audit_Bucket", "at '/controlPlane/audit/bucket': 'Audit_Bucket' does not match"),
    ("controlPlane.audit.prefix=/audit", "at '/controlPlane/audit/prefix'"),
    ("controlPlane.audit.prefix=audit/*", "at '/controlPlane/audit/prefix'"),
    ("controlPlane.audit.maxMb=0", "at '/controlPlane/audit/maxMb': minimum: got 0, want 1"),
    ("controlPlane.audit.lockDays=0", "at '/controlPlane/audit/lockDays': minimum: got 0, want 1"),
    ("controlPlane.audit.sealAfterSeconds=0", "at '/controlPlane/audit/sealAfterSeconds': minimum: got 0, want 60"),
    ("controlPlane.audit.ship=s3://b/p", "additional properties 'ship' not allowed"),
])
def test_bad_audit_values_are_named(helm_bin: str, value: str, expected: str) -> None:
    with pytest.raises(HelmError) as refused:
        template(helm_bin, sets=(value,))
    assert expected in str(refused.value)


def test_chart_inputs_carry_the_audit_bucket() -> None:
    inputs = {"region": REGION, "runtime_role_arn": "arn:aws:iam::123456789012:role/r", "control_plane_role_arn": ROLE,
              "tenant_secret_name_prefix": "fairshare/tenants", "audit_bucket": BUCKET, "audit_prefix": "audit/"}
    values = chart_inputs_values(inputs, REGION)
    assert values["controlPlane"] == {"roleArn": ROLE, "audit": {"bucket": BUCKET, "prefix": "audit/"}}
    # An output from before the audit bucket: the region's Terraform must be applied again first.
    with pytest.raises(ChartInputsError, match=r"audit_bucket is missing or empty \(the chart's controlPlane\."
                                               r"audit\.bucket\); .*make region-apply"):
        chart_inputs_values({k: v for k, v in inputs.items() if k != "audit_bucket"}, REGION)
