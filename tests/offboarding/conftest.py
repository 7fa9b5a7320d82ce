"""A platform of its own for the offboarding tests (offboarding destroys a tenant, so never the shared
session platform's): the real control plane, one Envoy, one runtime replica, and a moto server (server
mode, a separate process the runtime also reads from) holding the tenants' model artifacts in a versioned
bucket and their secrets in Secrets Manager."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

# The local platform's fixture (tests/offboarding/test_local.py), kept in its own module: its names are its own.
from tests.offboarding.local_platform import local_platform  # noqa: F401
from tests.offboarding.platform import REGION, OffboardPlatform, write_base_config, write_tenant
from xds_server.auth.keys import SigningKey
from xds_server.local.aws import moto_server
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port

BUCKET = "offboard-us-east-1-models"
REPO_MODEL = Path(__file__).resolve().parents[2] / "config" / "models" / "acme" / "ticket-router" / "1" / "model.onnx"
# leaver and retry are offboarded by the tests; stayer is the tenant that must never notice.
OFFBOARDED = ("leaver", "retry")
TENANTS = (*OFFBOARDED, "stayer")


def artifact_key(tenant: str, version: str) -> str:
    return f"tenants/{tenant}/router/{version}/model.onnx"


def write_config(root: Path, gateway_port: int) -> Path:
    cfg = write_base_config(root, {"id": REGION, "gateway_port": gateway_port, "model_bucket": BUCKET,
                                   "pools": [{"name": "cpu", "replicas": 1, "model_cache_mb": 64}]})
    data = REPO_MODEL.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    for tenant in TENANTS:
        write_tenant(cfg, tenant, {v: f"s3://{BUCKET}/{artifact_key(tenant, v)}" for v in ("1", "2")}
                     if tenant in OFFBOARDED else None, digest, len(data))
    return cfg


def seed_aws() -> None:
    """Every offboarded tenant's artifacts with several versions and a delete marker (a versioned bucket
    keeps all of them), stayer's artifact, and a secret per tenant named as terraform/modules/tenant_secrets
    names them."""
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    data = REPO_MODEL.read_bytes()
    for tenant in OFFBOARDED:
        for version in ("1", "2"):
            s3.put_object(Bucket=BUCKET, Key=artifact_key(tenant, version), Body=b"an older upload")
            s3.put_object(Bucket=BUCKET, Key=artifact_key(tenant, version), Body=data)
        s3.put_object(Bucket=BUCKET, Key=f"tenants/{tenant}/scratch.txt", Body=b"x")
        s3.delete_object(Bucket=BUCKET, Key=f"tenants/{tenant}/scratch.txt")  # leaves a delete marker
    s3.put_object(Bucket=BUCKET, Key=artifact_key("stayer", "1"), Body=data)
    sm = boto3.client("secretsmanager", region_name=REGION)
    for tenant in TENANTS:
        sm.create_secret(Name=f"fairshare/tenants/{tenant}/pseudonymisation-key", SecretString="k" * 48)


@pytest.fixture(scope="session")
def offboard_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OffboardPlatform]:
    root = tmp_path_factory.mktemp("offboard")
    platform: LocalPlatform | None = None
    with moto_server(root / "moto.log") as endpoint, pytest.MonkeyPatch.context() as env:
        try:
            # boto3 here and in every runtime replica (they inherit the environment) reads these; no
            # config or credentials file of the machine may leak in.
            for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                                "AWS_CONFIG_FILE": str(root / "none"),
                                "AWS_SHARED_CREDENTIALS_FILE": str(root / "none")}.items():
                env.setenv(name, value)
            seed_aws()
            cfg = write_config(root, free_port())
            state = root / "state"
            platform = LocalPlatform(PlatformOptions(config_dir=cfg, state_dir=state, xds_port=free_port(),
                                                     status_port=free_port()))
            platform.start()
            yield OffboardPlatform(platform, cfg, state, SigningKey.load_or_create(state), endpoint)
        finally:
            if platform is not None:
                platform.stop()
