"""The chart and Terraform agree on identities: the runtimes and the control plane run as the service
accounts the Terraform iam module's roles trust, annotated with the role ARNs Terraform outputs."""

from __future__ import annotations

from pathlib import Path

from tests.chart.helm import by_kind, find, template

RUNTIME_ROLE = "arn:aws:iam::123456789012:role/fairshare-eu-west-1-inference"
CONTROL_ROLE = "arn:aws:iam::123456789012:role/fairshare-eu-west-1-gateway"
# With a role, the chart refuses a control plane that does not ship its audit trail (test_audit_trail.py).
AUDIT_BUCKET = "controlPlane.audit.bucket=fairshare-eu-west-1-audit-123456789012"


def test_runtimes_run_as_the_account_terraform_trusts(helm_bin: str, spec_values: dict[str, Path]) -> None:
    # terraform/modules/iam trusts fairshare-runtime and fairshare-control-plane (its defaults).
    manifests = template(helm_bin, spec_values["eu-west-1"],
                         sets=(f"inference.roleArn={RUNTIME_ROLE}", f"controlPlane.roleArn={CONTROL_ROLE}",
                               AUDIT_BUCKET))
    runtime = find(manifests, "ServiceAccount", "fairshare-runtime")
    assert runtime["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == RUNTIME_ROLE
    control = find(manifests, "ServiceAccount", "fairshare-control-plane")
    assert control["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == CONTROL_ROLE
    pools = [d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"].startswith("fairshare-pool-")]
    assert pools, "no runtime Deployments rendered"
    assert {d["spec"]["template"]["spec"]["serviceAccountName"] for d in pools} == {"fairshare-runtime"}


def test_without_a_role_the_accounts_carry_no_annotation(helm_bin: str) -> None:
    runtime = find(template(helm_bin), "ServiceAccount", "fairshare-runtime")
    assert "annotations" not in runtime["metadata"]
