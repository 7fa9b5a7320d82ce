"""The runtime's Secrets Manager key source against a real moto server (real HTTP AWS APIs, no cloud), with
keys written the way terraform/modules/tenant_secrets writes them: a KMS-encrypted secret named
`<prefix>/<tenant>/pseudonymisation-key` whose value is put as a secret string. (tests/infra's region
apply checks the same source on the secrets a real `terraform apply` created.)"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inference_images.runtime.pii.entities import Entity
from inference_images.runtime.pii.keys import KeyRing, KeyUnavailableError, parse_source, secret_name
from inference_images.runtime.pii.pseudonyms import Pseudonymiser
from xds_server.local.aws import FAKE_CREDENTIALS, client, moto_server

REGION = "eu-west-1"
PREFIX = "fairshare/tenants"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(Path(tmp_path_factory.mktemp("moto")) / "moto.log") as url:
        yield url


@pytest.fixture(scope="module")
def sm(endpoint: str) -> Any:
    return client(endpoint, "secretsmanager", REGION)


@pytest.fixture
def source(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    # Found the way a pod finds them: region, endpoint and credentials from the environment.
    for name, value in {**FAKE_CREDENTIALS, "AWS_REGION": REGION, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    return parse_source(f"secretsmanager:{PREFIX}")


def terraform_writes(endpoint: str, sm: Any, tenant: str) -> str:
    kms = client(endpoint, "kms", REGION)
    key_id = kms.create_key(Description="secrets")["KeyMetadata"]["Arn"]
    sm.create_secret(Name=secret_name(PREFIX, tenant), KmsKeyId=key_id,
                     Tags=[{"Key": "fairshare:tenant", "Value": tenant}])
    value = secrets.token_urlsafe(36)[:48]
    sm.put_secret_value(SecretId=secret_name(PREFIX, tenant), SecretString=value)
    return value


def test_a_key_terraform_wrote_is_read_and_a_rotation_is_picked_up_after_the_ttl(
        endpoint: str, sm: Any, source: Any) -> None:
    first = terraform_writes(endpoint, sm, "acme")
    clock = Clock()
    ring = KeyRing(source, ttl_s=300, clock=clock)
    email = "bob@example.com"
    want = Pseudonymiser(first.encode()).pseudonym(Entity.EMAIL, email)
    assert ring.get("acme").pseudonym(Entity.EMAIL, email) == want
    # Rotation: Terraform bumps key_version and writes a new version.
    second = secrets.token_urlsafe(36)[:48]
    sm.put_secret_value(SecretId=secret_name(PREFIX, "acme"), SecretString=second)
    clock.now = 299
    assert ring.get("acme").key_id == Pseudonymiser(first.encode()).key_id
    clock.now = 301
    assert ring.get("acme").key_id == Pseudonymiser(second.encode()).key_id


def test_missing_empty_and_deleted_keys_fail_closed_naming_the_secret(sm: Any, source: Any) -> None:
    ring = KeyRing(source, ttl_s=300, clock=Clock())
    with pytest.raises(KeyUnavailableError) as missing:
        ring.get("nobody")
    assert "tenant 'nobody'" in str(missing.value)
    assert "secret fairshare/tenants/nobody/pseudonymisation-key" in str(missing.value)
    assert "ResourceNotFoundException" in str(missing.value)
    # generate_tenant_keys = false: an empty container, no value yet.
    sm.create_secret(Name=secret_name(PREFIX, "empty"))
    with pytest.raises(KeyUnavailableError, match="ResourceNotFoundException"):
        ring.get("empty")
    # Offboarded: scheduled for deletion, never used again (once its TTL ends, for a key already held).
    value = "v" * 48
    sm.create_secret(Name=secret_name(PREFIX, "leaver"), SecretString=value)
    clock = Clock()
    held = KeyRing(source, ttl_s=300, clock=clock)
    assert held.get("leaver") is not None
    sm.delete_secret(SecretId=secret_name(PREFIX, "leaver"), RecoveryWindowInDays=7)
    clock.now = 301
    with pytest.raises(KeyUnavailableError) as deleted:
        held.get("leaver")
    assert value not in str(deleted.value)
