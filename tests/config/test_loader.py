"""The config model: what users rely on when they edit a tenant file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.config.conftest import REPO_CONFIG
from xds_server.config import ConfigError, load_config


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(directory)
    return [str(p) for p in info.value.problems]


def test_example_config_has_what_the_docs_promise() -> None:
    cfg = load_config(REPO_CONFIG)
    assert len(cfg.tenants) >= 4 and len({t.spec.tier for t in cfg.tenants.values()}) >= 3
    assert len(cfg.regions) >= 2
    assert len(cfg.models) >= 2 and all(len(m.versions) >= 2 for m in cfg.models.values())
    assert "embedder" in cfg.tenants["acme"].spec.models
    assert "embedder" in cfg.tenants["initech"].spec.models
    assert "embedder" not in cfg.tenants["globex"].spec.models


def test_tier_defaults_and_overrides(cfg_dir: Path) -> None:
    cfg = load_config(cfg_dir)
    acme = cfg.tenants["acme"]
    tier = cfg.tiers[acme.spec.tier]
    assert acme.quotas.concurrency == 32  # overridden in acme.yaml
    assert acme.quotas.requests_per_second == tier.quotas.requests_per_second  # inherited
    assert acme.weight == tier.weight


def test_unknown_field_names_file_and_field(cfg_dir: Path) -> None:
    path = cfg_dir / "tenants" / "acme.yaml"
    path.write_text(path.read_text() + "colour: red\n")
    assert problems_of(cfg_dir) == [f"{path}: colour: unknown field"]


def test_every_problem_in_a_file_is_reported_at_once(cfg_dir: Path) -> None:
    path = cfg_dir / "tenants" / "acme.yaml"
    path.write_text(
        "id: acme\ntier: platinum\nbogus: 1\n"
        "regions: {home: us-east-1, allowed: [us-east-1, mars-1]}\n"
        "quotas: {concurrency: 0}\n"
        "models:\n  embedder: {split: {v1: 90, v2: 5}}\n  nomodel: {split: {v1: 100}}\n"
    )
    found = problems_of(cfg_dir)
    # Schema problems and references to other files, in one report.
    assert f"{path}: bogus: unknown field" in found
    assert any(p.startswith(f"{path}: quotas.concurrency:") for p in found)
    assert f"{path}: models.embedder.split: weights must add up to 100, got 95" in found
    assert any(p.startswith(f"{path}: tier: unknown tier 'platinum'") for p in found)
    assert f"{path}: regions.allowed[1]: unknown region 'mars-1' (known: eu-west-1, us-east-1)" in found
    assert f"{path}: models.nomodel: unknown model 'nomodel' (known: classifier, embedder)" in found
    assert len(found) == 6, found


def test_every_weight_out_of_range_in_a_split_is_named(cfg_dir: Path) -> None:
    path = cfg_dir / "tenants" / "acme.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["models"]["embedder"] = {"split": {"v1": 150, "v2": -50}}
    path.write_text(yaml.safe_dump(spec))
    assert problems_of(cfg_dir) == [
        f"{path}: models.embedder.split: weights must be between 0 and 100: 'v1' got 150, 'v2' got -50"]


def test_a_tenant_defined_twice_is_an_error(cfg_dir: Path) -> None:
    src = cfg_dir / "tenants" / "hooli.yaml"
    (cfg_dir / "tenants" / "hooli.yml").write_text(src.read_text())
    assert problems_of(cfg_dir) == [f"{cfg_dir / 'tenants' / 'hooli.yml'}: id: tenant 'hooli' is defined twice: "
                                    "also in hooli.yaml (keep one of the two files)"]


def test_cross_references_are_checked(cfg_dir: Path) -> None:
    path = cfg_dir / "tenants" / "globex.yaml"
    path.write_text(
        "id: globex\ntier: platinum\n"
        "regions: {home: us-east-1, allowed: [us-east-1, mars-1]}\n"
        "models:\n  nomodel: {split: {v1: 100}}\n  classifier: {split: {v1: 50, v9: 50}}\n"
    )
    found = problems_of(cfg_dir)
    assert any("tier: unknown tier 'platinum'" in p for p in found)
    assert any("regions.allowed[1]: unknown region 'mars-1'" in p for p in found)
    assert any("models.nomodel: unknown model 'nomodel'" in p for p in found)
    assert any("models.classifier.split.v9: model 'classifier' has no version 'v9'" in p for p in found)


def test_residency_of_split_versions(cfg_dir: Path) -> None:
    # classifier v2 is deployed in us-east-1 only: an EU-allowed tenant cannot route traffic to it.
    path = cfg_dir / "tenants" / "initech.yaml"
    text = path.read_text().replace("classifier: {split: {v1: 100}}", "classifier: {split: {v1: 50, v2: 50}}")
    path.write_text(text)
    assert problems_of(cfg_dir) == [
        f"{path}: models.classifier.split.v2: classifier:v2 takes 50% of the tenant's traffic but is not deployed in "
            "eu-west-1, where the tenant is served and its data must stay (it runs only in us-east-1) "
            "(policy residency: split-outside-allowed-regions)",
    ]


def test_yaml_syntax_error_names_line(cfg_dir: Path) -> None:
    path = cfg_dir / "tenants" / "hooli.yaml"
    path.write_text("id: hooli\n  tier: [free\n")
    found = problems_of(cfg_dir)
    assert len(found) == 1 and found[0].startswith(f"{path}: line 2") and "not valid YAML" in found[0]


def test_file_name_must_match_tenant_id(cfg_dir: Path) -> None:
    src = cfg_dir / "tenants" / "hooli.yaml"
    (cfg_dir / "tenants" / "hooli2.yaml").write_text(src.read_text())
    expected = f"{cfg_dir / 'tenants' / 'hooli2.yaml'}: id: must match the file name 'hooli2', got 'hooli'"
    assert problems_of(cfg_dir) == [expected]


def test_missing_files_and_directory(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope") == [f"{tmp_path / 'nope'}: config directory does not exist"]
    (tmp_path / "empty").mkdir()
    found = problems_of(tmp_path / "empty")
    assert any("tiers.yaml: required file is missing" in p for p in found)
    assert any("tenants: tenant directory is missing" in p for p in found)


def test_a_file_given_as_the_config_directory_is_said_to_be_a_file(tmp_path: Path) -> None:
    """It had been "config directory does not exist", of a path that exists."""
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    assert problems_of(tmp_path / "passwd") == [
        f"{tmp_path / 'passwd'}: is a file, not a config directory "
        "(the folder holding tiers.yaml, models.yaml, regions.yaml and tenants/)"]
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    assert problems_of(tmp_path / "gone") == [f"{tmp_path / 'gone'}: a symbolic link to {tmp_path / 'nowhere'}, "
                                              "which does not exist"]


def test_a_file_where_tenants_goes_is_said_to_be_one(cfg_dir: Path) -> None:
    import shutil

    shutil.rmtree(cfg_dir / "tenants")
    (cfg_dir / "tenants").write_text("")
    assert [p for p in problems_of(cfg_dir) if "tenants:" in p] == [
        f"{cfg_dir / 'tenants'}: is a file, not a directory (tenant files go in the folder tenants/, one <id>.yaml "
        "each)"]


def test_an_unreadable_tenant_directory_is_a_problem_naming_it(cfg_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.scandir's PermissionError was a traceback (root reads anything, so the refusal is simulated)."""
    import os

    from xds_server.config import loader

    real = os.scandir
    tenants = cfg_dir / "tenants"

    def scandir(path: object) -> object:
        if os.fspath(path) == str(tenants):  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(loader.os, "scandir", scandir)
    assert f"{tenants}: cannot list the tenant directory: Permission denied" in problems_of(cfg_dir)


def test_tenant_files_that_would_not_be_read_are_named(cfg_dir: Path) -> None:
    """A tenant file in a subfolder, in upper case or as JSON had been passed over: "config OK: 4 tenants",
    and the tenant silently missing (or removed, if it was served)."""
    tenants = cfg_dir / "tenants"
    acme = (tenants / "acme.yaml").read_text()
    (tenants / "team-a").mkdir()
    (tenants / "team-a" / "newco.yaml").write_text(acme.replace("id: acme", "id: newco"))
    (tenants / "newco2.YAML").write_text(acme.replace("id: acme", "id: newco2"))
    (tenants / "newco3.json").write_text("{}")
    # No tenant's: a dotfile, an editor's backup, a folder with no YAML in it (a model artifact's).
    (tenants / ".gitkeep").write_text("")
    (tenants / "acme.yaml~").write_text(acme)
    (tenants / "router").mkdir()
    (tenants / "router" / "config.json").write_text("{}")
    home = "tenant files go directly in tenants/ as <id>.yaml (or <id>.yml, in lower case)"
    assert problems_of(cfg_dir) == [
        f"{tenants / 'newco2.YAML'}: not read as a tenant file: {home}",
        f"{tenants / 'newco3.json'}: not read as a tenant file: {home}",
        f"{tenants / 'team-a'}: a folder, and the YAML files in it (newco.yaml) are not read: {home}"]
    for name in ("newco2.YAML", "newco3.json", "team-a/newco.yaml"):
        (tenants / name).unlink()
    assert len(load_config(cfg_dir).tenants) == 4


def test_an_incremental_load_declines_a_misnamed_tenant_file(cfg_dir: Path) -> None:
    """The watcher's event for newco.YAML had been passed over as an editor's file: the full load names it."""
    from xds_server.config.loader import TenantFileCache

    cache = TenantFileCache()
    load_config(cfg_dir, cache)
    newco = cfg_dir / "tenants" / "newco.YAML"
    newco.write_text((cfg_dir / "tenants" / "acme.yaml").read_text().replace("id: acme", "id: newco"))
    with pytest.raises(ConfigError, match=r"newco\.YAML: not read as a tenant file"):
        load_config(cfg_dir, cache, changed=[newco])


def test_regions_need_distinct_gateway_ports(cfg_dir: Path) -> None:
    path = cfg_dir / "regions.yaml"
    path.write_text(path.read_text().replace("gateway_port: 8081", "gateway_port: 8080"))
    assert problems_of(cfg_dir) == [f"{path}: regions[1].gateway_port: port 8080 is already used by region 'us-east-1'"]


def test_cached_reload_sees_edits_deletions_and_changes_to_shared_files(cfg_dir: Path) -> None:
    from xds_server.config.loader import TenantFileCache

    cache = TenantFileCache()
    assert load_config(cfg_dir, cache).tenants["acme"].weight == 4
    # A tier's weight changes: tenants that inherit it are resolved again, though their files did not change.
    tiers = cfg_dir / "tiers.yaml"
    tiers.write_text(tiers.read_text().replace("weight: 4", "weight: 5"))
    assert load_config(cfg_dir, cache).tenants["acme"].weight == 5
    # An edited tenant file is read again; a deleted one is gone.
    acme = cfg_dir / "tenants" / "acme.yaml"
    acme.write_text(acme.read_text().replace("quotas: {concurrency: 32}", "quotas: {concurrency: 7}"))
    (cfg_dir / "tenants" / "hooli.yaml").unlink()
    cfg = load_config(cfg_dir, cache)
    assert cfg.tenants["acme"].quotas.concurrency == 7
    assert "hooli" not in cfg.tenants
    # A broken edit is reported through the cache just as without it, every time it is loaded.
    acme.write_text("id: acme\ntier: nope\n")
    for _ in range(2):
        found = problems_of_cached(cfg_dir, cache)
        assert any("acme.yaml: regions: required field is missing" in p for p in found)
        assert any("acme.yaml: tier: unknown tier 'nope'" in p for p in found)


def problems_of_cached(directory: Path, cache) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load_config(directory, cache)
    return [str(p) for p in info.value.problems]
