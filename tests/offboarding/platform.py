"""A running platform for the offboarding tests, with what they need of it: tokens, URLs, the command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform

REGION = "us-east-1"


def write_base_config(root: Path, region: dict[str, Any]) -> Path:
    """What both platforms' configs share: one tier allowing ONNX own models, `region` (its id REGION, one
    pool named cpu), the lexicon classifier; mutual TLS on, as the example config has it (the models step
    unloads through the admin ports' mTLS). The tenants are each platform's own (`write_tenant`)."""
    cfg = root / "config"
    (cfg / "tenants").mkdir(parents=True)
    quotas = {"concurrency": 64, "requests_per_second": 2000, "tokens_per_minute": 100_000_000, "gpus": 0}
    (cfg / "tiers.yaml").write_text(yaml.safe_dump({"tiers": {"pro": {
        "weight": 1, "quotas": quotas,
        "own_models": {"max_per_tenant": 5, "max_bytes_per_model": 10_000_000, "formats": ["onnx"]}}}}))
    (cfg / "platform.yaml").write_text(yaml.safe_dump({"ratelimit": {"enabled": True},
                                                       "gateway": {"upstream_tls": {"enabled": True}}}))
    (cfg / "regions.yaml").write_text(yaml.safe_dump({"regions": [region]}))
    (cfg / "models.yaml").write_text(yaml.safe_dump({"models": {"classifier": {
        "kind": "classifier", "versions": {"v1": {"pool": "cpu", "loader": "lexicon"}}}}}))
    return cfg


def write_tenant(cfg: Path, tenant: str, artifacts: dict[str, str] | None, digest: str,
                 size: int | None = None) -> None:
    """A tenant of the offboarding tests on the classifier; with `artifacts` (version -> where), an own model
    `router` of those versions, split half and half; `size`: the bytes an S3 artifact declares."""
    spec: dict[str, Any] = {"id": tenant, "tier": "pro", "regions": {"home": REGION, "allowed": [REGION]},
                            "models": {"classifier": {"split": {"v1": 100}}}}
    if artifacts is not None:
        spec["own_models"] = {"router": {"format": "onnx", "pool": "cpu", "versions": {
            v: {"artifact": where, "sha256": digest, **({"bytes": size} if size is not None else {})}
            for v, where in artifacts.items()}, "split": {"1": 50, "2": 50}}}
    (cfg / "tenants" / f"{tenant}.yaml").write_text(
        f"# {tenant}: a tenant of the offboarding tests\n" + yaml.safe_dump(spec, sort_keys=False))


@dataclass
class OffboardPlatform:
    platform: LocalPlatform
    config_dir: Path
    state_dir: Path
    key: SigningKey
    aws_endpoint: str | None = None  # a moto server's; None: no AWS at all

    def token(self, tenant: str) -> str:
        assert self.platform.config is not None
        return issue_token(self.key, self.platform.config.platform.auth, tenant)

    def url(self, path: str) -> str:
        return self.platform.gateway_url(REGION) + path

    @property
    def status_port(self) -> int:
        return self.platform.opts.status_port

    def cli(self, *args: str) -> list[str]:
        return ["tenant", "offboard", *args, "--config", str(self.config_dir), "--state", str(self.state_dir),
                "--status-port", str(self.status_port)]

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION)
