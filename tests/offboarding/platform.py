"""A running platform for the offboarding tests, with what they need of it: tokens, URLs, the command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform

REGION = "us-east-1"


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
