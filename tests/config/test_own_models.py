"""Tenants' own models in the config: the fields of docs/design/0003, clear errors naming the tenant file,
model and field, local artifacts resolved against the tenant file's folder, and the policy's refusals."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from xds_server.config import ConfigError, load_config

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
SHA = "0" * 64


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    shutil.copytree(REPO_CONFIG, tmp_path / "config")
    return tmp_path / "config"


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(directory)
    return [str(p) for p in info.value.problems]


def set_own(cfg_dir: Path, tenant: str, own: dict) -> Path:  # type: ignore[type-arg]
    path = cfg_dir / "tenants" / f"{tenant}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["own_models"] = own
    path.write_text(yaml.safe_dump(spec))
    return path


def onnx(artifact: str, **extra: object) -> dict:  # type: ignore[type-arg]
    # An S3 artifact declares its size where the tier caps it (policy models: own-model-size-undeclared).
    version = {"artifact": artifact, "sha256": SHA, **({"bytes": 1000} if artifact.startswith("s3://") else {})}
    return {"format": "onnx", "pool": "cpu-general", "versions": {"1": version}, **extra}


def test_example_tenants_bring_an_onnx_model_and_a_head() -> None:
    cfg = load_config(REPO_CONFIG)
    router = cfg.tenants["acme"].spec.own_models["ticket-router"]
    assert str(router.format) == "onnx" and router.split == {"1": 90, "2": 10}
    # Relative to the tenant file's folder, made absolute for the runtime, with its size measured.
    v1 = router.versions["1"]
    assert v1.artifact == str(REPO_CONFIG / "models/acme/ticket-router/1/model.onnx")
    assert v1.bytes == Path(v1.artifact).stat().st_size
    intent = cfg.tenants["globex"].spec.own_models["intent"]
    assert (str(intent.format), intent.base, intent.split) == ("head", "embedder/v1", {"1": 100})
    assert cfg.tenants["acme"].own_routes == {"us-east-1": ["ticket-router"], "eu-west-1": ["ticket-router"]}
    assert cfg.tenants["globex"].own_routes == {"us-east-1": ["intent"]}
    assert cfg.regions["us-east-1"].model_bucket == "fairshare-us-east-1-models"
    assert cfg.regions["us-east-1"].pool("cpu-general").model_cache_mb == 256  # type: ignore[union-attr]


def test_committed_artifacts_match_their_digests() -> None:
    """bench/example_models/train.py writes the artifacts; the tenant files must carry their digests."""
    cfg = load_config(REPO_CONFIG)
    for tenant in cfg.tenants.values():
        for name, model in tenant.spec.own_models.items():
            for version, ov in model.versions.items():
                digest = hashlib.sha256(Path(ov.artifact).read_bytes()).hexdigest()
                assert digest == ov.sha256, f"{tenant.id}:{name} version {version}: rerun the training script"


def test_unknown_field_names_file_model_and_field(cfg_dir: Path) -> None:
    set_own(cfg_dir, "acme", {"rr": onnx("s3://fairshare-us-east-1-models/tenants/acme/r.onnx", colour="red")})
    assert f"{cfg_dir}/tenants/acme.yaml: own_models.rr.colour: unknown field" in problems_of(cfg_dir)


def test_split_must_add_up_over_declared_versions(cfg_dir: Path) -> None:
    model = onnx("s3://fairshare-us-east-1-models/tenants/acme/r.onnx")
    model["versions"]["2"] = {"artifact": "s3://fairshare-us-east-1-models/tenants/acme/r2.onnx", "sha256": SHA}
    set_own(cfg_dir, "acme", {"a": {**model, "split": {"1": 50, "3": 50}}, "b": {**model, "split": {"1": 50}},
                              "c": model})
    found = "\n".join(problems_of(cfg_dir))
    assert "own_models.a: split names versions that are not declared: 3 (versions: 1, 2)" in found
    assert "own_models.b: weights must add up to 100, got 50" in found
    assert "own_models.c: split is required with more than one version (versions: 1, 2)" in found


def test_head_needs_a_base_and_onnx_takes_none(cfg_dir: Path) -> None:
    art = "s3://fairshare-us-east-1-models/tenants/acme/h.onnx"
    set_own(cfg_dir, "acme", {"h": {**onnx(art), "format": "head"}, "o": onnx(art, base="embedder/v1"),
                              "x": {**onnx(art), "format": "pickle"}})
    found = "\n".join(problems_of(cfg_dir))
    assert "own_models.h: a head model needs base: the catalog model and version it runs over" in found
    assert "own_models.o: base is only for format 'head', not 'onnx'" in found
    assert "own_models.x.format: Input should be 'onnx' or 'head'" in found


def test_bad_artifacts_and_digests_are_named(cfg_dir: Path) -> None:
    set_own(cfg_dir, "acme", {
        "bucketonly": onnx("s3://fairshare-us-east-1-models"),
        "http": onnx("https://example.com/m.onnx"),
        "digest": {**onnx("s3://b/k"), "versions": {"1": {"artifact": "s3://b/k", "sha256": "abc"}}},
    })
    found = "\n".join(problems_of(cfg_dir))
    assert "bucketonly.versions.1.artifact: an S3 artifact must be s3://BUCKET/KEY naming one object" in found
    assert "own_models.http.versions.1.artifact: an artifact is an s3:// URI or a local path" in found
    assert "own_models.digest.versions.1.sha256: must be 64 lower-case hex digits" in found


def test_missing_local_artifact_is_refused_with_the_config(cfg_dir: Path) -> None:
    set_own(cfg_dir, "acme", {"missing": onnx("../models/acme/nowhere.onnx")})
    (problem,) = problems_of(cfg_dir)
    assert problem.startswith(f"{cfg_dir}/tenants/acme.yaml: own_models.missing.versions.1.artifact: "
                              f"cannot read {cfg_dir / 'models/acme/nowhere.onnx'}")


def test_own_model_may_not_shadow_a_catalog_model(cfg_dir: Path) -> None:
    set_own(cfg_dir, "acme", {"embedder": onnx("s3://fairshare-us-east-1-models/tenants/acme/e.onnx")})
    assert any("acme.yaml: own_models.embedder: own model 'embedder' has the name of a catalog model" in p
               for p in problems_of(cfg_dir))


def test_catalog_onnx_model_needs_its_artifact(cfg_dir: Path) -> None:
    models = cfg_dir / "models.yaml"
    data = yaml.safe_load(models.read_text())
    data["models"]["router"] = {"kind": "classifier", "versions": {
        "v1": {"pool": "cpu-general", "loader": "onnx",
               "artifact": "models/acme/ticket-router/1/model.onnx",
               "sha256": hashlib.sha256((cfg_dir / "models/acme/ticket-router/1/model.onnx").read_bytes()).hexdigest()},
    }}
    models.write_text(yaml.safe_dump(data))
    cfg = load_config(cfg_dir)
    assert cfg.models["router"].versions["v1"].artifact == str(cfg_dir / "models/acme/ticket-router/1/model.onnx")
    data["models"]["router"]["versions"]["v2"] = {"pool": "cpu-general", "loader": "onnx"}
    data["models"]["classifier"]["versions"]["v1"]["sha256"] = SHA
    models.write_text(yaml.safe_dump(data))
    found = "\n".join(problems_of(cfg_dir))
    assert "models.yaml: models.router.versions.v2: loader 'onnx' needs an artifact" in found
    assert "models.yaml: models.classifier.versions.v1: artifact and sha256 are for loader 'onnx'" in found


# The policy's refusals, as a reload sees them: the config refused whole, each naming file, field and rule.

def test_artifact_under_another_tenants_prefix_is_refused(cfg_dir: Path) -> None:
    set_own(cfg_dir, "globex", {"rr": onnx("s3://fairshare-us-east-1-models/tenants/acme/ticket-router/1/model.onnx")})
    (problem,) = problems_of(cfg_dir)
    assert problem.startswith(f"{cfg_dir}/tenants/globex.yaml: own_models.rr.versions.1.artifact: ")
    assert "not under the tenant's own prefix tenants/globex/" in problem
    assert problem.endswith("(policy models: own-model-artifact-outside-tenant-prefix)")


def test_artifact_in_a_region_the_tenant_does_not_allow_is_refused(cfg_dir: Path) -> None:
    # globex is US-only; the EU bucket would put its model data outside its regions.
    set_own(cfg_dir, "globex", {"rr": onnx("s3://fairshare-eu-west-1-models/tenants/globex/r/1/model.onnx")})
    (problem,) = problems_of(cfg_dir)
    assert "globex.yaml: own_models.rr.versions.1.artifact: bucket fairshare-eu-west-1-models is not the model " \
           "bucket of a region the tenant allows" in problem
    assert "(policy models: own-model-artifact-outside-allowed-regions)" in problem


def test_tier_caps_formats_and_head_bases_are_enforced(cfg_dir: Path) -> None:
    art = "s3://fairshare-us-east-1-models/tenants/hooli/m.onnx"
    # hooli is on the free tier: heads only, at most 2 models of at most 1 MB.
    set_own(cfg_dir, "hooli", {
        "aa": onnx(art),
        "bb": {"format": "head", "base": "embedder/v9", "pool": "gpu-small",
              "versions": {"1": {"artifact": art, "sha256": SHA, "bytes": 2_000_000}}},
        "cc": {"format": "head", "base": "embedder/v1", "pool": "cpu-general",
              "versions": {"1": {"artifact": art, "sha256": SHA}}},
    })
    found = "\n".join(problems_of(cfg_dir))
    for expected in (
        "own_models: declares 3 own models; tier free allows at most 2 (policy models: own-models-over-tier-cap)",
        "own_models.aa.format: tier free does not allow own models of format onnx (it allows: head)",
        "own_models.bb.versions.1.artifact: artifact is 2000000 bytes; tier free allows at most 1000000 bytes",
        "own_models.bb.base: base embedder/v9 is not a catalog model version (policy models: head-base-unknown)",
        "own_models.cc.base: base embedder/v1 is not deployed on pool cpu-general in us-east-1",
    ):
        assert expected in found, found


def test_pool_must_exist_where_the_tenant_is_served(cfg_dir: Path) -> None:
    set_own(cfg_dir, "acme", {"rr": {**onnx("s3://fairshare-us-east-1-models/tenants/acme/r.onnx"), "pool": "tpu"}})
    (problem,) = problems_of(cfg_dir)
    assert "acme.yaml: own_models.rr.pool: pool tpu does not exist in eu-west-1, us-east-1" in problem
