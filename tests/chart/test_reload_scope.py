"""What `helm upgrade` after a config change restarts, exactly as docs/helm.md ("Hot reload") states it: an
edited file reaches every pod through the ConfigMap swap alone (no pod template changes); a tenant added
(onboarding) changes the control plane's template (its volume lists each file); an own model file added
changes every runtime's; with `config.source` and S3 artifacts an onboarding changes no template at all."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.chart.helm import CONFIG, REPO, by_kind, template
from xds_server.config import load_config
from xds_server.deploy.helm_values import chart_values, dump_values

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/fairshare-eu-west-1-model-reader"
TENANT = {"id": "umbrella", "tier": "pro", "regions": {"home": REGION, "allowed": [REGION]},
          "models": {"classifier": {"split": {"v1": 100}}}}


def _copy(tmp_path: Path, name: str) -> Path:
    config = tmp_path / name
    shutil.copytree(CONFIG, config)
    return config


def _templates(helm_bin: str, tmp_path: Path, config: Path, source: str | None = None) -> dict[str, Any]:
    spec = tmp_path / f"{config.name}.yaml"
    spec.write_text(dump_values(chart_values(load_config(config), REGION, config, REPO / "policy", source)))
    control_plane = ROLE.replace("model-reader", "control-plane")
    sets: tuple[str, ...] = (f"inference.roleArn={ROLE}", f"controlPlane.roleArn={control_plane}",
                             "controlPlane.audit.bucket=fairshare-eu-west-1-audit-123456789012")
    if source:
        sets += (f"config.source={source}",)
    templates = {d["metadata"]["name"]: d["spec"]["template"]
                 for d in by_kind(template(helm_bin, spec, sets=sets), "Deployment")}
    # `helm template` has no lookup, so each render makes a new Redis password; an upgrade keeps it.
    templates["fairshare-control-plane"]["metadata"]["annotations"].pop("checksum/redis-auth")
    return templates


def _changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    assert before.keys() == after.keys()
    return {name for name in before if before[name] != after[name] and name != "fairshare-redis"}


def test_an_edited_tenant_restarts_nothing(helm_bin: str, tmp_path: Path) -> None:
    base = _copy(tmp_path, "base")
    edited = _copy(tmp_path, "edited")
    tenant = edited / "tenants" / "initech.yaml"
    doc = yaml.safe_load(tenant.read_text())
    doc["pii"]["redact"] = [e for e in doc["pii"]["redact"] if e != "phone"]
    tenant.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert not _changed(_templates(helm_bin, tmp_path, base), _templates(helm_bin, tmp_path, edited))


def test_onboarding_rolls_the_control_plane_and_an_own_model_file_every_runtime(helm_bin: str, tmp_path: Path) -> None:
    base = _copy(tmp_path, "base")
    onboarded = _copy(tmp_path, "onboarded")
    (onboarded / "tenants" / "umbrella.yaml").write_text(yaml.safe_dump(TENANT, sort_keys=False))
    before, after = _templates(helm_bin, tmp_path, base), _templates(helm_bin, tmp_path, onboarded)
    assert _changed(before, after) == {"fairshare-control-plane"}
    # Another tenant with an own model given by path under config/ (acme's, copied): every runtime's mount
    # lists the file.
    own = _copy(tmp_path, "own")
    doc = yaml.safe_load((own / "tenants" / "acme.yaml").read_text())
    doc.update(id="umbrella", tier="pro", regions={"home": REGION, "allowed": [REGION]})
    doc.pop("quotas", None)
    for version in doc["own_models"]["ticket-router"]["versions"].values():
        target = own / "models" / "umbrella" / Path(version["artifact"]).relative_to("../models/acme")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy((own / "tenants" / version["artifact"]).resolve(), target)
        version["artifact"] = "../" + target.relative_to(own).as_posix()
    (own / "tenants" / "umbrella.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    pools = {n for n in before if n.startswith("fairshare-pool-")}
    assert pools and _changed(before, _templates(helm_bin, tmp_path, own)) == pools | {"fairshare-control-plane"}


def test_onboarding_from_a_config_source_restarts_nothing(helm_bin: str, tmp_path: Path) -> None:
    source = "s3://fairshare-config-eu/fairshare/config.tar.gz"
    base = _copy(tmp_path, "base")
    onboarded = _copy(tmp_path, "onboarded")
    for config in (base, onboarded):
        # Local artifacts cannot reach the runtimes from a bundle: without own models given by path.
        for tenant in (config / "tenants").glob("*.yaml"):
            doc = yaml.safe_load(tenant.read_text())
            if doc.pop("own_models", None) is not None:
                doc.pop("routes", None)
                tenant.write_text(yaml.safe_dump(doc, sort_keys=False))
    (onboarded / "tenants" / "umbrella.yaml").write_text(yaml.safe_dump(TENANT, sort_keys=False))
    assert not _changed(_templates(helm_bin, tmp_path, base, source), _templates(helm_bin, tmp_path, onboarded, source))
