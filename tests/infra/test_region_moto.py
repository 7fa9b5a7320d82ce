"""A real `terraform apply` and `destroy` of the eu-west-1 region root against a moto server (real HTTP
AWS APIs, no cloud), checked from the outside with boto3, the way an operator would look at a region."""

from __future__ import annotations

import json
from typing import Any

from bench.terraform_driver import STATE_BUCKET, MotoServer
from inference_images.runtime.pii.keys import SecretsManagerKeys
from tests.infra.conftest import REGION, PlannedRegion

CLUSTER = f"fairshare-{REGION}"
EU_TENANTS = {"acme", "initech"}  # config/tenants: the tenants that allow eu-west-1


def test_apply_builds_the_region_and_destroy_leaves_nothing(planned_region: PlannedRegion, moto: MotoServer) -> None:
    region = planned_region.region
    region.apply(planned_region.plan_file)
    outputs = region.outputs()
    eks, s3 = moto.client("eks", REGION), moto.client("s3", REGION)
    sm, iam = moto.client("secretsmanager", REGION), moto.client("iam", REGION)

    # Cluster and node groups: the GPU pool tainted, labelled and bounded as the variable file says.
    assert eks.list_clusters()["clusters"] == [CLUSTER]
    cluster = eks.describe_cluster(name=CLUSTER)["cluster"]
    keys = outputs["kms_key_arns"]  # one per service: models (S3), secrets (Secrets Manager), cluster (EKS)
    assert len(set(keys.values())) == 3
    assert cluster["encryptionConfig"][0]["provider"]["keyArn"] == keys["cluster"]
    assert cluster["resourcesVpcConfig"]["endpointPublicAccess"] is False
    assert set(eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"]) == {"system", "cpu-general", "gpu-small"}
    gpu = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName="gpu-small")["nodegroup"]
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert gpu["labels"]["fairshare.io/accelerator"] == "nvidia-l4"
    # Cluster Autoscaler's GPU label: it waits for a new node's GPUs instead of scaling up again.
    assert gpu["labels"]["k8s.amazonaws.com/accelerator"] == "nvidia-l4"
    assert gpu["labels"]["fairshare.io/pool"] == "gpu-small"
    assert gpu["scalingConfig"] == {"minSize": 2, "maxSize": 8, "desiredSize": 2}
    assert gpu["amiType"] == "BOTTLEROCKET_x86_64_NVIDIA"  # the NVIDIA device plugin is in the image
    system = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName="system")["nodegroup"]
    assert not system.get("taints") and "k8s.amazonaws.com/accelerator" not in system["labels"]

    # Model bucket: in the region, encrypted with the region's models key, versioned, closed to the public.
    bucket = outputs["model_bucket"]
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == REGION
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms",
                                                          "KMSMasterKeyID": keys["models"]}
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    # Nothing but a tenant's pipeline writes tenants' models: the bucket policy refuses every other
    # principal's writes under tenants/ (each writer role's own policy keeps it to its prefix).
    statements = {st["Sid"]: st for st in json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]}
    guard = statements["OnlyTenantPipelinesWriteTenantModels"]
    assert guard["Effect"] == "Deny" and "s3:PutObject" in guard["Action"]
    assert guard["Resource"] == f"arn:aws:s3:::{bucket}/tenants/*"
    assert guard["Condition"] == {"ArnNotLike": {
        "aws:PrincipalArn": f"arn:aws:iam::123456789012:role/{CLUSTER}-model-writer-*"}}
    assert "DenyInsecureTransport" in statements

    # One pseudonymisation key per tenant allowed here (none for US-only tenants), KMS-encrypted, never in
    # the state; the runtime's key source reads it as Terraform wrote it.
    secrets = {s["Name"]: s for s in sm.list_secrets()["SecretList"]}
    assert set(secrets) == {f"fairshare/tenants/{t}/pseudonymisation-key" for t in EU_TENANTS}
    assert {s["KmsKeyId"] for s in secrets.values()} == {keys["secrets"]}
    key = sm.get_secret_value(SecretId="fairshare/tenants/initech/pseudonymisation-key")["SecretString"]
    assert len(key) == 48
    state = s3.get_object(Bucket=STATE_BUCKET, Key=f"fairshare/{REGION}/terraform.tfstate")["Body"].read().decode()
    assert key not in state and '"resources"' in state
    assert SecretsManagerKeys(client=sm).read("initech") == key.encode()

    # The inference pods' role trusts the cluster's OIDC provider for their service account only.
    role = iam.get_role(RoleName=f"{CLUSTER}-model-reader")["Role"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert "system:serviceaccount:fairshare:fairshare-runtime" in str(statement["Condition"])
    # ... and may read the tenants' pseudonymisation keys, only those, decrypting only through Secrets Manager.
    reads = json.loads(json.dumps(iam.get_role_policy(RoleName=f"{CLUSTER}-model-reader",
                                                      PolicyName="read-pseudonymisation-keys")["PolicyDocument"]))
    by_sid = {st["Sid"]: st for st in reads["Statement"]}
    assert by_sid["ReadPseudonymisationKeys"]["Action"] == "secretsmanager:GetSecretValue"
    assert by_sid["ReadPseudonymisationKeys"]["Resource"] == (
        f"arn:aws:secretsmanager:{REGION}:123456789012:secret:fairshare/tenants/*/pseudonymisation-key-??????")
    assert by_sid["DecryptPseudonymisationKeys"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}}

    region.destroy()
    assert _leftovers(moto) == {}


def _leftovers(moto: MotoServer) -> dict[str, Any]:
    """Everything the region created that still exists (the state bucket and moto's defaults excepted)."""
    eks, s3 = moto.client("eks", REGION), moto.client("s3", REGION)
    ec2, kms = moto.client("ec2", REGION), moto.client("kms", REGION)
    sm, iam = moto.client("secretsmanager", REGION), moto.client("iam", REGION)
    live_keys = [k["KeyId"] for k in kms.list_keys()["Keys"]
                 if kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] != "PendingDeletion"]
    found = {
        "clusters": eks.list_clusters()["clusters"],
        "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"] != STATE_BUCKET],
        "secrets": [s["Name"] for s in sm.list_secrets()["SecretList"]],
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]],
        "nat_gateways": [n["NatGatewayId"] for n in ec2.describe_nat_gateways()["NatGateways"]
                         if n["State"] != "deleted"],
        "elastic_ips": [a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]],
        "kms_keys_not_pending_deletion": live_keys,
        "kms_aliases": [a["AliasName"] for a in kms.list_aliases()["Aliases"] if "fairshare" in a["AliasName"]],
        "iam_roles": [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("fairshare")],
        "oidc_providers": iam.list_open_id_connect_providers()["OpenIDConnectProviderList"],
    }
    return {kind: items for kind, items in found.items() if items}
