"""A tenant's own model (or a catalog model) with a local artifact: the config load checks the artifact's sha256
and refuses a wrong one naming the tenant file and field, in `fairshare validate` and on the control plane's
reload (which keeps serving the last good config). Each digest is kept by the file's stat: a reload that does
not touch an artifact does not read it again, one shared by many tenants is read once, and a rewritten one is
read and checked again although no tenant file changed."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference_images.runtime.models.artifacts import digest
from tests.config.conftest import example_copy
from xds_server.cli import main
from xds_server.config import ConfigError, load_config, loader
from xds_server.config.loader import TenantFileCache
from xds_server.controlplane.service import ControlPlane
from xds_server.xds.store import SnapshotStore

ROUTER = "models/acme/ticket-router"


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    """The example config, and initech (tier pro) with its own `router`: version 2 a 30% canary."""
    root = example_copy(tmp_path)
    for version in ("1", "2"):
        (root / f"models/initech/router/{version}").mkdir(parents=True)
        shutil.copy(root / f"{ROUTER}/{version}/model.onnx", root / f"models/initech/router/{version}/model.onnx")
    set_router(root, {v: sha_of(root / f"models/initech/router/{v}/model.onnx") for v in ("1", "2")})
    return root


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_router(root: Path, digests: dict[str, str], artifact: str = "../models/initech/router/{v}/model.onnx") -> Path:
    path = root / "tenants" / "initech.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["own_models"] = {"router": {
        "format": "onnx", "pool": "cpu-general",
        "versions": {v: {"artifact": artifact.format(v=v), "sha256": sha} for v, sha in digests.items()},
        **({"split": {"1": 70, "2": 30}} if len(digests) == 2 else {})}}
    path.write_text(yaml.safe_dump(spec))
    return path


def problems_of(root: Path, cache: TenantFileCache | None = None, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(root, cache, **kwargs)
    return [str(p) for p in info.value.problems]


def mismatch(root: Path, field: str, actual: str, declared: str, file: str = "tenants/initech.yaml") -> str:
    return f"{root / file}: {field}: the artifact's sha256 is {actual}, not {declared}"


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the loader hashed each file."""
    counts: Counter[str] = Counter()
    real = loader.file_digest

    def counting(path: Path) -> str:
        counts[str(path)] += 1
        return real(path)

    monkeypatch.setattr(loader, "file_digest", counting)
    return counts


def test_validate_refuses_a_local_artifact_whose_sha256_is_not_the_declared_one(
        cfg_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifact = cfg_dir / "models/initech/router/2/model.onnx"
    good, wrong = sha_of(artifact), sha_of(cfg_dir / f"{ROUTER}/1/model.onnx")
    set_router(cfg_dir, {"1": wrong, "2": wrong})
    assert main(["validate", "--config", str(cfg_dir)]) == 2
    err = capsys.readouterr().err
    assert "config OK" not in err
    assert mismatch(cfg_dir, "own_models.router.versions.2.sha256", good, wrong) in err
    # Version 1's bytes are the ones its digest names: only version 2 is wrong.
    assert "versions.1" not in err


def test_the_control_plane_refuses_it_and_keeps_serving_the_last_good_config(cfg_dir: Path) -> None:
    plane = ControlPlane(cfg_dir, None, "{}", SnapshotStore(), "127.0.0.1")
    first = plane.reload()
    assert first.ok and plane.config is not None
    serving = plane.config
    v1 = sha_of(cfg_dir / "models/initech/router/1/model.onnx")
    v2 = sha_of(cfg_dir / "models/initech/router/2/model.onnx")
    set_router(cfg_dir, {"1": v1, "2": v1})
    refused = plane.reload()
    assert not refused.ok and refused.version == first.version
    assert refused.error is not None
    assert mismatch(cfg_dir, "own_models.router.versions.2.sha256", v2, v1) in refused.error
    assert plane.config is serving and plane.compiled is not None and plane.compiled.version == first.version


def test_a_reload_hashes_only_what_changed_and_a_shared_artifact_once(cfg_dir: Path, hashed: Counter[str]) -> None:
    shared = cfg_dir / "models/initech/router/1/model.onnx"
    sha = sha_of(shared)
    # One file named by many of the tenant's own models (a tenant's files are its own: tenants never share one).
    spec = yaml.safe_load((cfg_dir / "tenants/initech.yaml").read_text())
    for i in range(15):
        spec["own_models"][f"router-{i}"] = {"format": "onnx", "pool": "cpu-general",
                                             "versions": {"1": {"artifact": str(shared), "sha256": sha}}}
    (cfg_dir / "tenants/initech.yaml").write_text(yaml.safe_dump(spec))
    cache = TenantFileCache()
    load_config(cfg_dir, cache)
    # Every local artifact once: 16 models name `shared`.
    artifacts = {str(p) for p in (cfg_dir / "models").rglob("*.onnx")}
    assert set(hashed) == artifacts and set(hashed.values()) == {1}

    # Nothing changed, or a tenant file did but not what it names: nothing is read again.
    hashed.clear()
    load_config(cfg_dir, cache)
    acme = cfg_dir / "tenants/acme.yaml"
    acme.write_text(acme.read_text().replace("quotas: {concurrency: 32}", "quotas: {concurrency: 31}"))
    assert load_config(cfg_dir, cache, changed=[acme]).tenants["acme"].quotas.concurrency == 31  # incremental
    acme.write_text(acme.read_text().replace("quotas: {concurrency: 31}", "quotas: {concurrency: 30}"))
    assert load_config(cfg_dir, cache).tenants["acme"].quotas.concurrency == 30  # full
    assert not hashed

    # The artifact rewritten, no tenant file touched: read again, once, and refused for every model naming it.
    original = shared.read_bytes()
    shared.write_bytes(original + b"\0")
    found = problems_of(cfg_dir, cache)
    assert hashed == {str(shared): 1}
    tampered = sha_of(shared)
    assert mismatch(cfg_dir, "own_models.router-7.versions.1.sha256", tampered, sha) in found
    assert len(found) == 16  # router's version 1 and the 15 others
    # Put back: accepted again, with no tenant file edited.
    shared.write_bytes(original)
    load_config(cfg_dir, cache)
    assert hashed == {str(shared): 2}


def test_an_edit_that_names_a_wrong_digest_is_refused_by_an_incremental_reload_too(cfg_dir: Path) -> None:
    cache = TenantFileCache()
    load_config(cfg_dir, cache)
    v1 = sha_of(cfg_dir / "models/initech/router/1/model.onnx")
    edited = set_router(cfg_dir, {"1": "ab" * 32})
    assert problems_of(cfg_dir, cache, changed=[edited]) == [
        mismatch(cfg_dir, "own_models.router.versions.1.sha256", v1, "ab" * 32)]


def test_an_artifact_rewritten_is_checked_again_when_the_watcher_names_it_alone(cfg_dir: Path) -> None:
    artifact = cfg_dir / "models/initech/router/1/model.onnx"
    sha = sha_of(artifact)
    cache = TenantFileCache()
    load_config(cfg_dir, cache)
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    # The watcher names the artifact alone: not a tenant file, but what a tenant file names.
    assert problems_of(cfg_dir, cache, changed=[artifact]) == [
        mismatch(cfg_dir, "own_models.router.versions.1.sha256", sha_of(artifact), sha)]


def test_a_tenants_artifact_outside_its_own_folder_is_refused_unread(cfg_dir: Path, hashed: Counter[str]) -> None:
    """Another tenant's model, a file elsewhere on the host, a link out of the tenant's folder: refused before
    a byte is read, so the refusal tells no digest of it."""
    secret = cfg_dir.parent / "secret.bin"
    secret.write_bytes(b"not a model")
    link = cfg_dir / "models/initech/router/elsewhere.onnx"
    link.symlink_to(secret)
    for artifact in ("../models/acme/ticket-router/1/model.onnx", str(secret),
                     "../models/initech/router/elsewhere.onnx", "../models/initech-evil/m.onnx"):
        set_router(cfg_dir, {"1": "ab" * 32}, artifact=artifact)
        found = problems_of(cfg_dir)
        assert found == [f"{cfg_dir / 'tenants/initech.yaml'}: own_models.router.versions.1.artifact: {artifact} is "
                         "not in models/initech/ of the config: a tenant serves only its own files (put it there, or "
                         "on S3 under tenants/initech/)"], found
    assert str(secret) not in hashed


def test_a_catalog_model_with_a_local_artifact_is_checked_too(cfg_dir: Path) -> None:
    models = cfg_dir / "models.yaml"
    data = yaml.safe_load(models.read_text())
    artifact = cfg_dir / f"{ROUTER}/1/model.onnx"
    data["models"]["scorer"] = {"kind": "classifier", "versions": {
        "v1": {"pool": "cpu-general", "loader": "onnx", "artifact": f"{ROUTER}/1/model.onnx", "sha256": "cd" * 32}}}
    models.write_text(yaml.safe_dump(data))
    assert problems_of(cfg_dir) == [
        mismatch(cfg_dir, "models.scorer.versions.v1.sha256", sha_of(artifact), "cd" * 32, "models.yaml")]


def test_a_directory_artifact_has_the_runtimes_digest_and_is_checked_again_when_a_file_in_it_changes(
        cfg_dir: Path, hashed: Counter[str]) -> None:
    tree = cfg_dir / "models/initech/router/tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "model.onnx").write_bytes((cfg_dir / f"{ROUTER}/1/model.onnx").read_bytes())
    (tree / "sub/vocab.txt").write_text("a\nb\n")
    sha = digest(tree)  # what the runtime verifies a directory by
    set_router(cfg_dir, {"1": sha}, artifact="../models/initech/router/tree")
    cache = TenantFileCache()
    load_config(cfg_dir, cache)
    hashed.clear()
    load_config(cfg_dir, cache)
    assert not hashed
    (tree / "sub/vocab.txt").write_text("a\nc\n")  # same size; the folder's own stat is unchanged
    assert problems_of(cfg_dir, cache) == [
        mismatch(cfg_dir, "own_models.router.versions.1.sha256", digest(tree), sha)]


def test_an_artifact_that_is_not_a_file_is_refused_without_reading_it(cfg_dir: Path) -> None:
    fifo = cfg_dir / "models/initech/router/pipe.onnx"
    os.mkfifo(fifo)  # reading it would block the reload forever
    set_router(cfg_dir, {"1": "ab" * 32}, artifact="../models/initech/router/pipe.onnx")
    assert problems_of(cfg_dir) == [
        f"{cfg_dir / 'tenants/initech.yaml'}: own_models.router.versions.1.artifact: {fifo} is not a file or a "
        "directory"]


def test_an_unreadable_artifact_is_a_problem_not_a_crash(cfg_dir: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    artifact = cfg_dir / "models/initech/router/1/model.onnx"
    artifact.chmod(0)
    set_router(cfg_dir, {"1": "ab" * 32})
    assert problems_of(cfg_dir) == [
        f"{cfg_dir / 'tenants/initech.yaml'}: own_models.router.versions.1.artifact: cannot read {artifact}: "
        "Permission denied"]


def test_a_control_plane_of_one_region_reads_only_the_artifacts_of_tenants_allowed_there(cfg_dir: Path) -> None:
    """`serve --region`: its cluster holds only those files (the chart ships no others), and a tenant's bytes
    never leave the regions it allows. The rest of the config is checked as everywhere."""
    from xds_server.config.loader import ArtifactDigests

    (cfg_dir / "models/globex/intent/1/model.onnx").unlink()  # globex: us-east-1 only
    eu = TenantFileCache(digests=ArtifactDigests(regions=frozenset({"eu-west-1"})))
    cfg = load_config(cfg_dir, eu)
    intent = cfg.tenants["globex"].spec.own_models["intent"].versions["1"]
    assert intent.artifact == str(cfg_dir / "models/globex/intent/1/model.onnx") and intent.bytes is None
    assert cfg.tenants["acme"].spec.own_models["ticket-router"].versions["1"].bytes is not None  # measured
    # Every region's (CI, a local run): the missing file is refused.
    assert any("globex.yaml: own_models.intent.versions.1.artifact: cannot read" in p for p in problems_of(cfg_dir))
    # A tenant of the region still has its files checked: initech (eu-west-1) with a wrong digest.
    set_router(cfg_dir, {"1": "ab" * 32})
    assert any("initech.yaml: own_models.router.versions.1.sha256" in p for p in problems_of(cfg_dir, eu))
