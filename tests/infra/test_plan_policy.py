"""The infrastructure policy on real plans (`terraform show -json`): the region as written passes, as emulated
and as production plans it (EKS add-ons and an admin access entry), and copies of it with one safeguard
removed each fail with exactly the rules that guard them: the bucket's encryption, the GPU taint, the region
an EU-only tenant allows, network-policy enforcement, the metadata hop limit, the audit log, a supported
Kubernetes version, a GPU instance that holds a replica, a kms:ViaService condition, and the audit bucket's
Object Lock and its retention."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bench.terraform_driver import MotoServer, Region
from tests.infra.conftest import REGION, PlannedRegion
from tests.infra.policy_eval import violations

BUCKET = "module.model_store.aws_s3_bucket.this"
AUDIT_BUCKET = "module.audit_store.aws_s3_bucket.this"
AUDIT_LOCK = "module.audit_store.aws_s3_bucket_object_lock_configuration.this"
GPU_POOL = 'module.node_pools.aws_eks_node_group.this["gpu-small"]'
CLUSTER = "module.cluster.aws_eks_cluster.this"
VPC_CNI = 'aws_eks_addon.this["vpc-cni"]'
# What production plans and the emulator cannot: the EKS add-ons, and the admin access entry they require;
# and a region that is not throwaway (no force_destroy), whose audit records are locked in COMPLIANCE mode.
PRODUCTION = {"install_eks_addons": "true",
              "cluster_admin_principal_arns": '["arn:aws:iam::123456789012:role/platform-admin"]',
              "force_destroy": "false"}
REPO = Path(__file__).resolve().parents[2]


def test_the_region_plan_passes(planned_region: PlannedRegion) -> None:
    assert violations(planned_region.plan) == set()


@pytest.fixture(scope="module")
def production_plan(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    region = Region.in_copy(tmp_path_factory.mktemp("production"), REGION, moto, extra_vars=PRODUCTION)
    region.init(remote_state=False)
    plan_file = region.tf.workdir.parent / "production.tfplan"
    region.plan(plan_file)
    return region.show_json(plan_file)


def test_the_production_shaped_plan_passes(production_plan: dict[str, object]) -> None:
    changes = production_plan["resource_changes"]
    assert isinstance(changes, list)
    addons = {rc["change"]["after"]["addon_name"]: rc["change"]["after"] for rc in changes
              if rc["type"] == "aws_eks_addon"}
    assert addons["vpc-cni"]["configuration_values"] == '{"enableNetworkPolicy":"true"}'
    assert any(rc["type"] == "aws_eks_access_entry" for rc in changes)
    # The audit bucket: Object Lock on, every record locked in COMPLIANCE mode for policy/retention's 400 days.
    after = {rc["address"]: rc["change"]["after"] for rc in changes}
    assert after[AUDIT_BUCKET]["object_lock_enabled"] is True and after[AUDIT_BUCKET]["force_destroy"] is False
    (retention,) = after[AUDIT_LOCK]["rule"][0]["default_retention"]
    assert (retention["mode"], retention["days"]) == ("COMPLIANCE", 400)
    assert violations(production_plan) == set()


def test_the_audit_retention_is_the_retention_policys() -> None:
    """Terraform's default lock period is policy/retention's audit_days: one number, which the policy holds."""
    policy = re.search(r"^audit_days := (\d+)$", (REPO / "policy" / "retention" / "retention.rego").read_text(), re.M)
    variable = re.search(r'variable "audit_retention_days" \{[^}]*default\s*=\s*(\d+)',
                         (REPO / "terraform" / "region" / "variables.tf").read_text())
    assert policy is not None and variable is not None
    assert variable.group(1) == policy.group(1) == "400"


def _memory_mib(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_the_gpu_replica_request_is_the_charts(planned_region: PlannedRegion) -> None:
    """The GPU pool's node group carries the replica request the policy checks the instance types
    against: by default that is the chart's GPU requests, and its GPU count is config/regions.yaml's."""
    requests = yaml.safe_load((REPO / "helm" / "fairshare" / "values.yaml").read_text())["inference"]["resources"][
        "gpu"]["requests"]
    regions = yaml.safe_load((REPO / "config" / "regions.yaml").read_text())["regions"]
    (pool,) = [p for r in regions if r["id"] == REGION for p in r["pools"] if p["name"] == "gpu-small"]
    (group,) = [rc for rc in planned_region.plan["resource_changes"] if rc["address"] == GPU_POOL]
    tags = group["change"]["after"]["tags"]
    assert tags["fairshare:replica-cpu"] == str(int(requests["cpu"]))
    assert tags["fairshare:replica-memory-mib"] == str(_memory_mib(requests["memory"]))
    assert tags["fairshare:replica-gpus"] == str(pool["gpus_per_replica"])


def _cut(path: Path, start: str, end: str) -> None:
    """Remove the text from `start` up to (not including) `end`, failing loudly if the code moved."""
    text = path.read_text()
    i, j = text.index(start), text.index(end, text.index(start))
    path.write_text(text[:i] + text[j:])


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_each_safeguard_removed_fails_its_rule(moto: MotoServer, tmp_path: Path) -> None:
    # The audit records locked for 30 days only (less than policy/retention's 400).
    region = Region.in_copy(tmp_path, REGION, moto, extra_vars={**PRODUCTION, "audit_retention_days": "30"})
    tf = region.tf.workdir.parent
    _cut(tf / "modules" / "model_store" / "main.tf",
         'resource "aws_s3_bucket_server_side_encryption_configuration"', 'resource "aws_s3_bucket_versioning"')
    _cut(tf / "modules" / "node_pools" / "main.tf", '  dynamic "taint"', "  tags = merge")
    _replace(tf / "region" / "providers.tf", "region = var.region", 'region = "us-east-1"')
    _replace(tf / "region" / "main.tf", 'jsonencode({ enableNetworkPolicy = "true" })',
             'jsonencode({ enableNetworkPolicy = "false" })')
    _replace(tf / "modules" / "node_pools" / "main.tf", "http_put_response_hop_limit = 1",
             "http_put_response_hop_limit = 2")
    _replace(tf / "modules" / "cluster" / "main.tf", "enabled_cluster_log_types = var.log_types",
             'enabled_cluster_log_types = ["api"]')
    tfvars = tf / "regions" / f"{REGION}.tfvars"
    _replace(tfvars, 'kubernetes_version = "1.35"', 'kubernetes_version = "1.31"')
    _replace(tfvars, 'instance_types = ["g6.12xlarge"]', 'instance_types = ["g6.xlarge"]')
    # The model reader's decrypt: its kms:ViaService condition goes.
    _cut(tf / "modules" / "iam" / "main.tf",
         '    condition {\n      test     = "StringEquals"\n      variable = "kms:ViaService"\n'
         '      values   = [local.via_s3]', '  }\n}\n\nresource "aws_iam_role" "inference"')
    _replace(tf / "modules" / "audit_store" / "main.tf", "object_lock_enabled = true", "object_lock_enabled = false")
    region.init(remote_state=False)
    region.plan(tmp_path / "mutated.tfplan")
    found = violations(region.show_json(tmp_path / "mutated.tfplan"))
    launch_templates = {s for r, s in found if r == "imds-not-hardened"}
    kms = {s for r, s in found if r == "kms-use-without-via-service"}
    assert found == {
        ("bucket-not-kms-encrypted", BUCKET),
        ("bucket-outside-tenant-regions", BUCKET),  # initech allows eu-west-1 only
        ("gpu-node-group-untainted", GPU_POOL),
        ("network-policy-not-enforced", VPC_CNI),
        ("audit-log-off", CLUSTER),
        ("kubernetes-version-unsupported", CLUSTER),
        ("gpu-instance-too-small", GPU_POOL),
        ("bucket-outside-tenant-regions", AUDIT_BUCKET),
        ("audit-bucket-not-locked", AUDIT_BUCKET),
        ("bucket-not-versioned", AUDIT_BUCKET),  # Object Lock is what keeps it versioned
        ("audit-retention-too-short", AUDIT_BUCKET),
        ("audit-expires-too-soon", AUDIT_BUCKET),  # kept as long as locked: 30 days
    } | {("imds-not-hardened", s) for s in launch_templates} | {("kms-use-without-via-service", s) for s in kms}
    # Every pool's launch template, and only the policy document whose condition went.
    assert launch_templates == {f'module.node_pools.aws_launch_template.this["{p}"]'
                                for p in ("system", "cpu-general", "gpu-small")}
    assert len(kms) == 1 and next(iter(kms)).startswith("module.iam.data.aws_iam_policy_document."), kms


def test_a_variable_file_without_the_configured_gpu_pool_is_refused_at_plan(
        moto: MotoServer, tmp_path: Path) -> None:
    region = Region.in_copy(tmp_path, REGION, moto)
    tfvars = region.tf.workdir.parent / "regions" / f"{REGION}.tfvars"
    _replace(tfvars, "gpu-small = {", "gpu-large = {")
    region.init(remote_state=False)
    # Only the check itself: it needs no other resource, so the plan stops there.
    proc = region.tf.run("plan", "-input=false", "-target=terraform_data.config_consistency", *region.var_args(),
                         check=False)
    assert proc.returncode != 0
    assert "gpu-small (gpu)" in proc.stderr and "config/regions.yaml" in proc.stderr


@pytest.mark.parametrize("tenants, expected", [
    ({}, set()),  # without the config, each secret's allowed-regions tag is read
    ({"acme": {"regions": {"home": "us-east-1", "allowed": ["us-east-1"]}}},
     {("bucket-outside-tenant-regions", BUCKET), ("bucket-outside-tenant-regions", AUDIT_BUCKET)}),
])
def test_the_tenant_config_decides_residency(planned_region: PlannedRegion, tenants: dict[str, object],
                                             expected: set[tuple[str, str]]) -> None:
    assert violations(planned_region.plan, tenants) == expected
