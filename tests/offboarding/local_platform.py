"""A platform for offboarding as a new user runs it on a local `fairshare run`: no AWS account at all (no
credentials, no moto), a region whose config still names a model bucket (as the example config does), and
a tenant whose own model lives in the config source (`models/<tenant>/...`, as the example tenants' do).
Its own platform: offboarding destroys the tenant."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.offboarding.platform import REGION, OffboardPlatform, write_base_config, write_tenant
from xds_server.auth.keys import SigningKey
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port

BUCKET = "local-us-east-1-models"
REPO_MODELS = Path(__file__).resolve().parents[2] / "config" / "models" / "acme" / "ticket-router"
# local is offboarded by the tests; stayer must never notice.
TENANTS = ("local", "stayer")


def local_model_files(cfg: Path, tenant: str) -> list[str]:
    """The tenant's own model in the config source, as the example tenants have theirs: two versions'
    artifacts and a metadata file beside them; the files' paths relative to the config folder."""
    folder = cfg / "models" / tenant / "router"
    for version in ("1", "2"):
        (folder / version).mkdir(parents=True)
        shutil.copy(REPO_MODELS / "1" / "model.onnx", folder / version / "model.onnx")
    shutil.copy(REPO_MODELS / "features.json", folder / "features.json")
    return sorted(str(p.relative_to(cfg)) for p in folder.rglob("*") if p.is_file())


def write_config(root: Path, gateway_port: int, bucket: str | None = BUCKET) -> Path:
    region: dict[str, Any] = {"id": REGION, "gateway_port": gateway_port,
                              "pools": [{"name": "cpu", "replicas": 2, "model_cache_mb": 64}]}
    if bucket is not None:
        region["model_bucket"] = bucket
    cfg = write_base_config(root, region)
    local_model_files(cfg, "local")
    digest = hashlib.sha256((REPO_MODELS / "1" / "model.onnx").read_bytes()).hexdigest()
    for tenant in TENANTS:
        write_tenant(cfg, tenant, {v: f"../models/local/router/{v}/model.onnx" for v in ("1", "2")}
                     if tenant == "local" else None, digest)
    return cfg


def without_aws(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """A machine without an AWS account: boto3 finds no credentials anywhere (and asks no instance role)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(root / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # boto3's default session keeps the credentials it found the first time (another test's, for moto).
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture(scope="session")
def local_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OffboardPlatform]:
    root = tmp_path_factory.mktemp("offboard-local")
    platform: LocalPlatform | None = None
    try:
        cfg = write_config(root, free_port())
        state = root / "state"
        platform = LocalPlatform(PlatformOptions(config_dir=cfg, state_dir=state, xds_port=free_port(),
                                                 status_port=free_port()))
        platform.start()
        yield OffboardPlatform(platform, cfg, state, SigningKey.load_or_create(state))
    finally:
        if platform is not None:
            platform.stop()
