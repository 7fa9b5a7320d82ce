"""A real `terraform apply` and `destroy` of the eu-west-1 region root against a moto server (real HTTP
AWS APIs, no cloud), checked from the outside with boto3, the way an operator would look at a region."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from bench.terraform_driver import STATE_BUCKET, MotoServer
from inference_images.runtime.pii.keys import SecretsManagerKeys
from tests.infra.conftest import AUDITOR, REGION, PlannedRegion
from xds_server.audit import AuditLog
from xds_server.audit.ship import S3Shipper
from xds_server.audit.verify import verify

CLUSTER = f"fairshare-{REGION}"
EU_TENANTS = {"acme", "initech"}  # config/tenants: the tenants that allow eu-west-1


def test_apply_builds_the_region_and_destroy_leaves_nothing(planned_region: PlannedRegion, moto: MotoServer,
                                                           tmp_path: Path) -> None:
    region = planned_region.region
    region.apply(planned_region.plan_file)
    outputs = region.outputs()
    eks, s3 = moto.client("eks", REGION), moto.client("s3", REGION)
    sm, iam = moto.client("secretsmanager", REGION), moto.client("iam", REGION)

    # Cluster and node groups: the GPU pool tainted, labelled and bounded as the variable file says.
    assert eks.list_clusters()["clusters"] == [CLUSTER]
    cluster = eks.describe_cluster(name=CLUSTER)["cluster"]
    # One per kind of data: models (S3), audit records (S3), secrets (Secrets Manager), cluster (EKS).
    keys = outputs["kms_key_arns"]
    assert set(keys) == {"models", "audit", "secrets", "cluster"} and len(set(keys.values())) == 4
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

    _check_the_audit_trail_ships_write_once(moto, outputs, keys["audit"], tmp_path)

    region.destroy()
    assert _leftovers(moto) == {}


POD = "fairshare-control-plane-7d9f8c6b5-x2x4q"


def _check_the_audit_trail_ships_write_once(moto: MotoServer, outputs: dict[str, Any], audit_key: str,
                                            tmp_path: Path) -> None:
    """The audit bucket is locked, encrypted and private; the control plane's role ships a sealed file to it
    with the shipper the control plane runs (IAM enforced), and can neither delete it, nor write elsewhere,
    nor read it back; an auditor downloads the pod's prefix and `audit verify` holds."""
    s3 = moto.client("s3", REGION)
    inputs = outputs["chart_inputs"]
    bucket, prefix = outputs["audit_bucket"], inputs["audit_prefix"]
    assert inputs["audit_bucket"] == bucket and prefix == "audit/"
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == REGION
    # Locked by default for policy/retention's 400 days; GOVERNANCE only because this region is throwaway
    # (force_destroy), COMPLIANCE otherwise (test_plan_policy's production-shaped plan).
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert {k: v for k, v in lock["Rule"]["DefaultRetention"].items() if v} == {"Mode": "GOVERNANCE", "Days": 400}
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": audit_key}
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    (ownership,) = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert ownership == {"ObjectOwnership": "BucketOwnerEnforced"}
    statements = {st["Sid"] for st in json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]}
    assert statements == {"DenyInsecureTransport"}
    # Kept for the retention, not forever: expired once unlocked, the version removed a day later.
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert lifecycle["Status"] == "Enabled" and lifecycle["Filter"] == {"Prefix": prefix}
    assert lifecycle["Expiration"]["Days"] == 400 and lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1

    # The role, as IRSA gives it to the control plane's pods.
    role = inputs["control_plane_role_arn"]
    creds = moto.client("sts", REGION).assume_role_with_web_identity(
        RoleArn=role, RoleSessionName=POD, WebIdentityToken="a-projected-service-account-token")["Credentials"]
    as_control_plane = boto3.client("s3", endpoint_url=moto.url, region_name=REGION,
                                    aws_access_key_id=creds["AccessKeyId"],
                                    aws_secret_access_key=creds["SecretAccessKey"],
                                    aws_session_token=creds["SessionToken"])
    iam = moto.client("iam", REGION)
    role_name = role.rsplit("/", 1)[1]
    (policy_name,) = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    grants = {st["Sid"]: st for st in iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)[
        "PolicyDocument"]["Statement"]}
    # moto checks GetObjectLockConfiguration as s3:ListBucket (its action table lacks it), which the role
    # rightly lacks: the grant is read here, and the shipper looks the rule up before IAM is enforced.
    assert grants["ReadAuditLockRule"]["Action"] == "s3:GetBucketObjectLockConfiguration"
    assert grants["ReadAuditLockRule"]["Resource"] == f"arn:aws:s3:::{bucket}"
    assert sorted(grants["ShipAuditRecords"]["Action"]) == ["s3:PutObject", "s3:PutObjectRetention"]
    assert grants["EncryptAuditRecords"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}
    assert not [a for st in grants.values() for a in _actions(st) if "Delete" in a or "Bypass" in a]

    # The chart's --audit-ship target: <bucket>/<prefix><region>/<pod name>.
    shipper = S3Shipper(f"s3://{bucket}/{prefix}{REGION}/{POD}", client=as_control_plane)
    assert shipper.object_lock() == ("GOVERNANCE", 400)
    # Over plain HTTP, moto's endpoint, the TLS-only policy refuses every object request, the role's too. Real
    # S3 is reached over HTTPS, which moto cannot stand in for: the policy is set aside while the role ships.
    with pytest.raises(ClientError) as plain:
        as_control_plane.put_object(Bucket=bucket, Key=f"{prefix}{REGION}/{POD}/over-http", Body=b"{}")
    assert plain.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    tls_only = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    s3.delete_bucket_policy(Bucket=bucket)
    try:
        _ship_and_read_back(moto, s3, as_control_plane, shipper, bucket, prefix, outputs, tmp_path)
    finally:
        # force_destroy (a throwaway region) locks in GOVERNANCE mode, which destroy may bypass to empty the
        # bucket. It does so at the bucket's own delete, after removing the lock rule, which moto (not S3)
        # refuses on a bucket holding objects: the records are removed here, as destroy would, bypassing the lock.
        for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
            s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"],
                             BypassGovernanceRetention=True)
        s3.put_bucket_policy(Bucket=bucket, Policy=tls_only)


def _ship_and_read_back(moto: MotoServer, s3: Any, as_control_plane: Any, shipper: S3Shipper, bucket: str,
                        prefix: str, outputs: dict[str, Any], tmp_path: Path) -> None:
    audit_log = AuditLog(tmp_path / "state" / "audit" / "audit.jsonl", shipper=shipper)
    audit_log.append("config.applied", config_version="v1", tenants=["acme"])
    audit_log.append("config.refused", summary="a quota above the platform's", tenants=["initech"])
    with _iam_enforced(moto):
        audit_log.seal()  # what a stopping control plane does
        assert shipper.flush() == []
        (key,) = shipper.shipped
        assert key == f"audit/{REGION}/{POD}/audit.jsonl.000001"
        for call in (lambda: as_control_plane.delete_object(Bucket=bucket, Key=key),
                     lambda: as_control_plane.delete_object(Bucket=bucket, Key=key, VersionId="any"),
                     lambda: as_control_plane.put_object(Bucket=bucket, Key="elsewhere/audit.jsonl", Body=b"{}"),
                     lambda: as_control_plane.get_object(Bucket=bucket, Key=key),
                     lambda: as_control_plane.list_objects_v2(Bucket=bucket)):
            with pytest.raises(ClientError) as refused:
                call()
            assert refused.value.response["Error"]["Code"] == "AccessDenied"

    # The auditor: one version, no delete marker, locked for 400 days; not even the account deletes it
    # without bypassing the lock (and a COMPLIANCE lock has no bypass).
    versions = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    assert [v["Key"] for v in versions["Versions"]] == [key] and not versions.get("DeleteMarkers")
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=399)
    with pytest.raises(ClientError) as locked:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=versions["Versions"][0]["VersionId"])
    assert locked.value.response["Error"]["Code"] == "AccessDenied"
    # docs/helm.md: the auditor assumes the region's reader role (IAM enforced), lists the pods' prefixes,
    # downloads one and runs `fairshare audit verify --log <dir>/audit.jsonl`; it can change nothing.
    as_auditor = _as_audit_reader(moto, outputs)
    trail = tmp_path / "trail"
    trail.mkdir()
    with _iam_enforced(moto):
        pods = as_auditor.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}{REGION}/", Delimiter="/")
        assert [p["Prefix"] for p in pods["CommonPrefixes"]] == [f"{prefix}{REGION}/{POD}/"]
        for obj in as_auditor.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}{REGION}/{POD}/")["Contents"]:
            as_auditor.download_file(bucket, obj["Key"], str(trail / obj["Key"].rsplit("/", 1)[1]))
        assert as_auditor.head_object(Bucket=bucket, Key=key)["ObjectLockMode"] == "GOVERNANCE"
        version = versions["Versions"][0]["VersionId"]
        for call in (lambda: as_auditor.put_object(Bucket=bucket, Key=key, Body=b"{}"),
                     lambda: as_auditor.delete_object(Bucket=bucket, Key=key),
                     lambda: as_auditor.delete_object(Bucket=bucket, Key=key, VersionId=version,
                                                      BypassGovernanceRetention=True),
                     lambda: as_auditor.put_object_retention(
                         Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True,
                         Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(days=1)})):
            with pytest.raises(ClientError) as refused:
                call()
            assert refused.value.response["Error"]["Code"] == "AccessDenied"
    result = verify(trail / "audit.jsonl")
    assert result.ok and [r["kind"] for r in result.records] == ["config.applied", "config.refused"]


def _as_audit_reader(moto: MotoServer, outputs: dict[str, Any]) -> Any:
    """An S3 client as the region's audit reader role, which only the principals in audit_reader_arns may
    assume (moto does not check trust policies: the trust is read from IAM instead)."""
    role = outputs["audit_reader_role_arn"]
    assert role == f"arn:aws:iam::123456789012:role/fairshare-{REGION}-audit-reader"
    iam = moto.client("iam", REGION)
    trust = iam.get_role(RoleName=role.rsplit("/", 1)[1])["Role"]["AssumeRolePolicyDocument"]
    assert [st["Principal"] for st in trust["Statement"]] == [{"AWS": AUDITOR}]
    creds = moto.client("sts", REGION).assume_role(RoleArn=role, RoleSessionName="soc2-auditor")["Credentials"]
    return boto3.client("s3", endpoint_url=moto.url, region_name=REGION,
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


@contextmanager
def _iam_enforced(moto: MotoServer) -> Iterator[None]:
    """moto checks every request against the caller's IAM policies while the block runs (its reset-auth API:
    the number of requests to let through unchecked, 0 here, infinity again after)."""

    def set_unchecked(count: str) -> None:
        # Not form-encoded (urllib's default), which the server would parse away from the body it reads.
        req = urllib.request.Request(f"{moto.url}/moto-api/reset-auth", data=count.encode(), method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=30):
            pass

    set_unchecked("0")
    try:
        yield
    finally:
        set_unchecked("inf")


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
