"""The runtimes in the cluster read each tenant's pseudonymisation key where Terraform put it: the chart
passes `--pseudonymisation-keys secretsmanager:<prefix>` with the prefix of `terraform output chart_inputs`
and AWS_REGION of the chart's region, and the runtime's own key source, configured from exactly the
rendered container, reads the key Terraform wrote (the eu-west-1 region applied against moto). Without a
prefix no key source is configured: tenants that pseudonymise then get 503, by design."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inference_images.runtime.__main__ import build_parser
from inference_images.runtime.pii.keys import parse_source
from tests.chart.conftest import APPLIED_REGION, AppliedRegion
from tests.chart.helm import HelmError, by_kind, find, template

FLAG = "--pseudonymisation-keys"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"


def runtimes(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runtime container of every pool Deployment."""
    found = [c for d in by_kind(manifests, "Deployment") if d["metadata"]["name"].startswith("fairshare-pool-")
             for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "runtime"]
    assert found, "no runtime Deployments rendered"
    return found


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_runtimes_read_the_keys_terraform_wrote(helm_bin: str, spec_values: dict[str, Path], applied: AppliedRegion,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = applied.outputs["chart_inputs"]
    prefix = inputs["tenant_secret_name_prefix"]
    manifests = template(helm_bin, spec_values[APPLIED_REGION], sets=(
        f"inference.roleArn={inputs['runtime_role_arn']}", f"inference.pseudonymisationKeys.secretPrefix={prefix}"))
    secrets = applied.moto.client("secretsmanager", APPLIED_REGION)
    expected = secrets.get_secret_value(SecretId=applied.outputs["tenant_secret_names"]["initech"])["SecretString"]
    for container in runtimes(manifests):
        env = env_of(container)
        assert env["AWS_REGION"] == inputs["region"] == APPLIED_REGION
        # The runtime's own parser and key source, from the container exactly as rendered.
        args = build_parser().parse_args(container["args"])
        assert args.pseudonymisation_keys == f"secretsmanager:{prefix}"
        assert args.pseudonymisation_key_ttl_s == 300
        monkeypatch.setenv("AWS_REGION", env["AWS_REGION"])
        monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL", applied.moto.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        assert parse_source(args.pseudonymisation_keys).read("initech") == expected.encode()
    # They read it as the role Terraform lets read exactly those secrets.
    account = find(manifests, "ServiceAccount", "fairshare-runtime")
    assert account["metadata"]["annotations"][ROLE_ANNOTATION] == inputs["runtime_role_arn"]
    iam = applied.moto.client("iam", APPLIED_REGION)
    role = inputs["runtime_role_arn"].rsplit("/", 1)[1]
    doc = iam.get_role_policy(RoleName=role, PolicyName="read-pseudonymisation-keys")["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    (read,) = [st for st in doc["Statement"] if st["Action"] == "secretsmanager:GetSecretValue"]
    assert read["Resource"].endswith(f":secret:{prefix}/*/pseudonymisation-key-??????")


def test_without_a_prefix_no_key_source_is_configured(helm_bin: str, spec_values: dict[str, Path]) -> None:
    for container in runtimes(template(helm_bin, spec_values[APPLIED_REGION])):
        assert FLAG not in container["args"] and "--pseudonymisation-key-ttl-s" not in container["args"]
        # Still the region's own endpoints for S3 (model artifacts).
        assert env_of(container)["AWS_REGION"] == APPLIED_REGION
        assert build_parser().parse_args(container["args"]).pseudonymisation_keys is None


def test_the_ttl_is_passed_as_set(helm_bin: str, spec_values: dict[str, Path]) -> None:
    manifests = template(helm_bin, spec_values[APPLIED_REGION], sets=(
        "inference.pseudonymisationKeys.secretPrefix=acme/keys", "inference.pseudonymisationKeys.ttlSeconds=60"))
    for container in runtimes(manifests):
        args = build_parser().parse_args(container["args"])
        assert (args.pseudonymisation_keys, args.pseudonymisation_key_ttl_s) == ("secretsmanager:acme/keys", 60)


@pytest.mark.parametrize(("value", "field"), [
    ("inference.pseudonymisationKeys.secretPrefix=fairshare/*", "/inference/pseudonymisationKeys/secretPrefix"),
    ("inference.pseudonymisationKeys.ttlSeconds=0", "/inference/pseudonymisationKeys/ttlSeconds"),
])
def test_bad_key_settings_are_refused_naming_the_field(helm_bin: str, value: str, field: str) -> None:
    with pytest.raises(HelmError) as err:
        template(helm_bin, sets=(value,))
    assert f"at '{field}'" in str(err.value), str(err.value)
