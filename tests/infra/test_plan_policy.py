"""The infrastructure policy on real plans (`terraform show -json`): the region as written passes, and a
copy of it with the bucket's encryption removed, the GPU taint removed and the provider pointed at a region
an EU-only tenant does not allow fails with exactly those three rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.terraform_driver import MotoServer, Region
from tests.infra.conftest import REGION, PlannedRegion
from tests.infra.policy_eval import violations

BUCKET = "module.model_store.aws_s3_bucket.this"
GPU_POOL = 'module.node_pools.aws_eks_node_group.this["gpu-small"]'


def test_the_region_plan_passes(planned_region: PlannedRegion) -> None:
    assert violations(planned_region.plan) == set()


def _cut(path: Path, start: str, end: str) -> None:
    """Remove the text from `start` up to (not including) `end`, failing loudly if the code moved."""
    text = path.read_text()
    i, j = text.index(start), text.index(end, text.index(start))
    path.write_text(text[:i] + text[j:])


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_an_unencrypted_misplaced_bucket_and_an_untainted_gpu_pool_fail(
        moto: MotoServer, tmp_path: Path) -> None:
    region = Region.in_copy(tmp_path, REGION, moto)
    tf = region.tf.workdir.parent
    _cut(tf / "modules" / "model_store" / "main.tf",
         'resource "aws_s3_bucket_server_side_encryption_configuration"', 'resource "aws_s3_bucket_versioning"')
    _cut(tf / "modules" / "node_pools" / "main.tf", '  dynamic "taint"', "  tags = merge")
    _replace(tf / "region" / "providers.tf", "region = var.region", 'region = "us-east-1"')
    region.init(remote_state=False)
    region.plan(tmp_path / "mutated.tfplan")
    found = violations(region.show_json(tmp_path / "mutated.tfplan"))
    assert found == {
        ("bucket-not-kms-encrypted", BUCKET),
        ("bucket-outside-tenant-regions", BUCKET),  # initech allows eu-west-1 only
        ("gpu-node-group-untainted", GPU_POOL),
    }


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
     {("bucket-outside-tenant-regions", BUCKET)}),
])
def test_the_tenant_config_decides_residency(planned_region: PlannedRegion, tenants: dict[str, object],
                                             expected: set[tuple[str, str]]) -> None:
    assert violations(planned_region.plan, tenants) == expected
